"""OCPP 2.0.1: provisioning, authorization, transactions, availability, meter values and events from the
charging station, and the typed commands in 2.0.1 words.

A 2.0.1 transaction is the charger's: its transactionId (a string) finds the record again after a restart.
Connector status plus the transaction's charging state map onto the 1.6 status vocabulary the gateway uses
everywhere (Occupied + Charging -> Charging, Occupied + EVConnected -> Preparing, ...).
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

from ocpp.routing import on
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action, DataTransferStatusEnumType, RegistrationStatusEnumType

from drivers.ocpp import measurands
from drivers.ocpp.badges import Badges201
from drivers.ocpp.certificates import Certificates201
from drivers.ocpp.charging_profiles import ChargingProfiles201
from drivers.ocpp.files import Files201
from drivers.ocpp.reports import Reports201
from drivers.ocpp.frames import V201
from drivers.ocpp.profiles import Capabilities, capabilities_201
from drivers.ocpp.session import when
from gateway.commands import RemoteStart, Reset, SetAvailability, Unlock
from gateway.store import Transaction

log = logging.getLogger(__name__)

_OCCUPIED = {"Charging": "Charging", "SuspendedEV": "SuspendedEV", "SuspendedEVSE": "SuspendedEVSE",
             "EVConnected": "Preparing", "Idle": "Preparing"}  # fmt: skip
# remoteStartId: unique enough per gateway run, and increasing so logs read in order.
_remote_start_ids = itertools.count(int(time.time()) % 1_000_000_000)


def unified_status(connector_status: str | None, charging_state: str | None, ended: bool = False) -> str | None:
    """2.0.1 connector status + charging state -> the gateway's (1.6) status vocabulary."""
    if connector_status is None:
        return _OCCUPIED.get(charging_state or "")
    if connector_status != "Occupied":
        return connector_status
    if ended:
        return "Finishing"
    return _OCCUPIED.get(charging_state or "", "Preparing")


class Session201(Badges201, Certificates201, ChargingProfiles201, Files201, Reports201):
    """Each concern's handlers come from its mixin; the core of the version is here."""

    version = V201
    _ocpp_version = V201
    _call = call
    _call_result = call_result

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._connector_status: dict[tuple[int, int], str] = {}
        self._charging_state: dict[int, str] = {}

    @on(Action.boot_notification)
    async def on_boot_notification(self, charging_station: dict[str, Any], reason: str,
                                   **_: Any) -> call_result.BootNotification:  # fmt: skip
        station = self.current.payload["chargingStation"]
        self.identify(station["vendorName"], station["model"])
        await self.recorder.booted(self.id, station["vendorName"], station["model"], station.get("serialNumber"),
                                   station.get("firmwareVersion"))  # fmt: skip
        self.boot_accepted()
        return call_result.BootNotification(
            current_time=self.now(),
            interval=self.settings.heartbeat_interval_s,
            status=RegistrationStatusEnumType.accepted,
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=self.now())

    @on(Action.status_notification)
    async def on_status_notification(self, timestamp: str, connector_status: str, evse_id: int, connector_id: int,
                                     **_: Any) -> call_result.StatusNotification:  # fmt: skip
        self._connector_status[(evse_id, connector_id)] = connector_status
        status = unified_status(connector_status, self._charging_state.get(evse_id))
        await self.recorder.status(self.id, evse_id, connector_id, status or connector_status, None, None,
                                   when(timestamp))  # fmt: skip
        return call_result.StatusNotification()

    @on(Action.transaction_event)
    async def on_transaction_event(self, event_type: str, timestamp: str, transaction_info: dict[str, Any],
                                   **_: Any) -> call_result.TransactionEvent:  # fmt: skip
        raw = self.current.payload
        ts = when(timestamp)
        info = raw["transactionInfo"]
        id_tag = (raw.get("idToken") or {}).get("idToken")
        values = self.meter_values(raw.get("meterValue"))
        tx = await self._transaction(info["transactionId"])
        if tx is not None and not tx.open and event_type != "Started":
            # An event of a session already closed: sent again after a lost answer, or late. Keep its meter
            # values (stored once) and change nothing else.
            await self.recorder.meter_values(self.id, tx.evse or 0, tx, values, live=False)
            return call_result.TransactionEvent()
        if tx is None or not tx.open:
            # Normally an event of type Started (a closed session with the same id means the station reused
            # its transactionId: a new session). After a lost Started, the first event that arrives opens it.
            evse = raw.get("evse") or {}
            begin = measurands.energy_at(raw.get("meterValue") or [], "Transaction.Begin")
            if begin is None and event_type == "Started":
                begin = measurands.energy_at(raw.get("meterValue") or [])
            tx = await self.recorder.start(self.id, evse.get("id", 0), evse.get("connectorId"), id_tag, ts, begin,
                                           ocpp_id=info["transactionId"])  # fmt: skip
            self.started(tx)
        elif id_tag and tx.id_tag is None:
            await self.recorder.identified(tx, id_tag)
        if values:  # what it measured while offline is history: recorded, not shown as live power
            await self.recorder.meter_values(self.id, tx.evse or 0, tx, values, live=not raw.get("offline"))
        ended = event_type == "Ended"
        await self._charging(tx, info.get("chargingState"), ended, ts)
        if ended:
            stop_wh = measurands.energy_at(raw.get("meterValue") or [], "Transaction.End")
            await self.recorder.stop(tx, ts, stop_wh, info.get("stoppedReason", "Local"), id_tag=id_tag)
            self.stopped(tx)
        token_info = await self.id_token_info(id_tag) if id_tag else None
        accepted = token_info is not None and token_info["status"] == "Accepted"
        reservation = raw.get("reservationId")
        if not ended and (accepted or reservation is not None):
            group = ((token_info or {}).get("groupIdToken") or {}).get("idToken")
            status, used = await self.recorder.reservation_for(self.id, tx.evse or 0, id_tag, group, reservation)
            if used is not None:
                await self.recorder.reservation_ended(self.id, used, "used", tx.id)
            if accepted:
                token_info["status"] = status  # type: ignore[index]
        return call_result.TransactionEvent(id_token_info=token_info)

    @on(Action.meter_values)
    async def on_meter_values(self, evse_id: int, **_: Any) -> call_result.MeterValues:
        # MeterValues carry no transactionId: the session running on that EVSE, if any, is the one they measure.
        tx = self.running.get(evse_id)
        await self.recorder.meter_values(self.id, evse_id, tx, self.meter_values(self.current.payload["meterValue"]))
        return call_result.MeterValues()

    @on(Action.notify_event)
    async def on_notify_event(self, **_: Any) -> call_result.NotifyEvent:
        await self.recorder.event(self.id, "NotifyEvent", self.current.payload)
        return call_result.NotifyEvent()

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **_: Any) -> call_result.DataTransfer:
        await self.recorder.event(self.id, "DataTransfer", self.current.payload)
        return call_result.DataTransfer(status=DataTransferStatusEnumType.unknown_vendor_id)

    async def _transaction(self, ocpp_id: str) -> Transaction | None:
        """A running session from memory; an ended one (a replay, a reused id) takes a store read."""
        tx = self.running_where(lambda t: t.ocpp_id == ocpp_id)
        return tx or await self.recorder.store.transactions.by_ocpp_id(self.id, ocpp_id)

    async def _charging(self, tx: Transaction, charging_state: str | None, ended: bool, ts: Any) -> None:
        """A transaction event moves the EVSE's status when it carries a charging state."""
        if tx.evse is None or tx.evse == 0 or (charging_state is None and not ended):
            return
        if charging_state is not None:
            self._charging_state[tx.evse] = charging_state
        connector = tx.connector or 1
        status = unified_status(self._connector_status.get((tx.evse, connector), "Occupied"),
                                self._charging_state.get(tx.evse), ended)  # fmt: skip
        if status is not None:
            await self.recorder.status(self.id, tx.evse, connector, status, None, None, ts)
        if ended:
            self._charging_state.pop(tx.evse, None)

    # -- typed commands, in 2.0.1 words --------------------------------------------------------------------

    def capabilities_request(self) -> tuple[str, dict[str, Any]]:
        return "GetVariables", {"getVariableData": [
            {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": name}}
            for name in ("RateUnit", "ProfileStackLevel")
        ]}  # fmt: skip

    def read_capabilities(self, answer: dict[str, Any]) -> Capabilities:
        return capabilities_201(answer["getVariableResult"])

    @staticmethod
    def remote_start(cmd: RemoteStart) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {"idToken": {"idToken": cmd.id_tag, "type": "Central"},
                                   "remoteStartId": next(_remote_start_ids)}  # fmt: skip
        if cmd.evse is not None:
            payload["evseId"] = cmd.evse
        return "RequestStartTransaction", payload

    @staticmethod
    def remote_stop(tx: Transaction) -> tuple[str, dict[str, Any]]:
        return "RequestStopTransaction", {"transactionId": tx.ocpp_id}

    @staticmethod
    def reset(cmd: Reset) -> tuple[str, dict[str, Any]]:
        return "Reset", {"type": "Immediate" if cmd.hard else "OnIdle"}

    @staticmethod
    def unlock(cmd: Unlock) -> tuple[str, dict[str, Any]]:
        return "UnlockConnector", {"evseId": cmd.evse, "connectorId": cmd.connector}

    @staticmethod
    def set_availability(cmd: SetAvailability) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {"operationalStatus": "Operative" if cmd.available else "Inoperative"}
        if cmd.evse is not None:
            payload["evse"] = {"id": cmd.evse}
        return "ChangeAvailability", payload
