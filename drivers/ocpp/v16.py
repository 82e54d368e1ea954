"""OCPP 1.6J: the Core profile from the charger, and the typed commands in 1.6 words.

A 1.6 connector n is EVSE n (connector 1) in the gateway's model; connector 0 is the charger itself.
The transactionId the gateway hands out is its own record id, so it is unique across restarts.
"""

from __future__ import annotations

import logging
from typing import Any

from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action, DataTransferStatus, RegistrationStatus

from drivers.ocpp import measurands
from drivers.ocpp.badges import Badges16
from drivers.ocpp.certificates import Certificates16
from drivers.ocpp.charging_profiles import ChargingProfiles16
from drivers.ocpp.files import Files16
from drivers.ocpp.reports import Reports16
from drivers.ocpp.frames import V16
from drivers.ocpp.profiles import Capabilities, capabilities_16
from drivers.ocpp.session import when
from gateway.commands import RemoteStart, Reset, SetAvailability, Unlock
from gateway.store import Transaction

log = logging.getLogger(__name__)


class Session16(Badges16, Certificates16, ChargingProfiles16, Files16, Reports16):
    """Each concern's handlers come from its mixin; the core of the version is here."""

    version = V16
    _ocpp_version = V16
    _call = call
    _call_result = call_result

    @on(Action.boot_notification)
    async def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str,
                                   charge_point_serial_number: str | None = None,
                                   charge_box_serial_number: str | None = None, firmware_version: str | None = None,
                                   **_: Any) -> call_result.BootNotification:  # fmt: skip
        serial = charge_point_serial_number or charge_box_serial_number
        self.tolerate(charge_point_vendor, charge_point_model)
        await self.recorder.booted(self.id, charge_point_vendor, charge_point_model, serial, firmware_version)
        return call_result.BootNotification(
            current_time=self.now(), interval=self.settings.heartbeat_interval_s, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=self.now())

    @on(Action.status_notification)
    async def on_status_notification(self, connector_id: int, error_code: str, status: str, info: str | None = None,
                                     timestamp: str | None = None, vendor_error_code: str | None = None,
                                     **_: Any) -> call_result.StatusNotification:  # fmt: skip
        ts = when(timestamp) if timestamp else None
        await self.recorder.status(self.id, connector_id, 1 if connector_id else 0, status, error_code, info, ts,
                                   vendor_error_code)  # fmt: skip
        return call_result.StatusNotification()

    @on(Action.start_transaction)
    async def on_start_transaction(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str,
                                   reservation_id: int | None = None,
                                   **_: Any) -> call_result.StartTransaction:  # fmt: skip
        # Even a refused badge gets a transactionId: the charger then stops, and the stop must find the record.
        info = await self.id_tag_info(id_tag)
        reservation = None
        if info["status"] == "Accepted":
            info["status"], reservation = await self.recorder.reservation_for(
                self.id, connector_id, id_tag, info.get("parentIdTag"), reservation_id)
        tx = await self.recorder.start(self.id, connector_id, 1, id_tag, when(timestamp), float(meter_start),
                                       reservation_id=reservation)  # fmt: skip
        self.started(tx)
        return call_result.StartTransaction(transaction_id=tx.id, id_tag_info=info)

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id: int, transaction_id: int | None = None,
                              **_: Any) -> call_result.MeterValues:  # fmt: skip
        if transaction_id is not None:
            tx = await self._transaction(transaction_id)
        else:  # not said: the session running on that connector, if there is one, is the one they measure
            tx = self.running.get(connector_id)
        values = self.meter_values(self.current.payload.get("meterValue"))
        await self.recorder.meter_values(self.id, connector_id, tx, values)
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    async def on_stop_transaction(self, meter_stop: int, timestamp: str, transaction_id: int,
                                  reason: str | None = None, id_tag: str | None = None,
                                  **_: Any) -> call_result.StopTransaction:  # fmt: skip
        ts = when(timestamp)
        tx = await self._transaction(transaction_id)
        if tx is None:
            # Not ours (another central system's, or a charger's invention): keep what it said, and accept it.
            log.warning("StopTransaction for an unknown transaction charger=%s transaction_id=%s", self.id,
                        transaction_id)  # fmt: skip
            await self.recorder.event(self.id, "StopTransaction", self.current.payload)
        else:
            data = self.meter_values(self.current.payload.get("transactionData"))
            await self.recorder.meter_values(self.id, tx.evse or 0, tx, data)
            soc = next((r.soc for r in map(measurands.read, (d.sampled_value for d in reversed(data)))
                        if r.soc is not None), None)  # fmt: skip
            await self.recorder.stop(tx, ts, float(meter_stop), reason or "Local", soc=soc, id_tag=id_tag)
            self.stopped(tx)
        info = await self.id_tag_info(id_tag) if id_tag else None
        return call_result.StopTransaction(id_tag_info=info)

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **_: Any) -> call_result.DataTransfer:
        await self.recorder.event(self.id, "DataTransfer", self.current.payload)
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)

    async def _transaction(self, transaction_id: int) -> Transaction | None:
        """A running session from memory; an ended (or another charger's) one takes a store read."""
        tx = self.running_where(lambda t: t.id == transaction_id)
        if tx is None:
            tx = await self.recorder.store.transactions.get(transaction_id)
        return tx if tx is not None and tx.charger_id == self.id else None

    # -- typed commands, in 1.6 words ---------------------------------------------------------------------

    def capabilities_request(self) -> tuple[str, dict[str, Any]]:
        return "GetConfiguration", {"key": ["ChargingScheduleAllowedChargingRateUnit", "ChargeProfileMaxStackLevel"]}

    def read_capabilities(self, answer: dict[str, Any]) -> Capabilities:
        return capabilities_16(answer.get("configurationKey") or [])

    @staticmethod
    def remote_start(cmd: RemoteStart) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {"idTag": cmd.id_tag}
        if cmd.evse is not None:
            payload["connectorId"] = cmd.evse
        return "RemoteStartTransaction", payload

    @staticmethod
    def remote_stop(tx: Transaction) -> tuple[str, dict[str, Any]]:
        return "RemoteStopTransaction", {"transactionId": tx.id}

    @staticmethod
    def reset(cmd: Reset) -> tuple[str, dict[str, Any]]:
        return "Reset", {"type": "Hard" if cmd.hard else "Soft"}

    @staticmethod
    def unlock(cmd: Unlock) -> tuple[str, dict[str, Any]]:
        return "UnlockConnector", {"connectorId": cmd.evse}

    @staticmethod
    def set_availability(cmd: SetAvailability) -> tuple[str, dict[str, Any]]:
        return "ChangeAvailability", {"connectorId": cmd.evse or 0,
                                      "type": "Operative" if cmd.available else "Inoperative"}  # fmt: skip
