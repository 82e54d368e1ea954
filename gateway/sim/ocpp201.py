"""The simulated charging station in OCPP 2.0.1: transactions as TransactionEvents, a small device model,
smart charging and remote control, from the station's side."""

from __future__ import annotations

import uuid
from typing import Any

from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import on
from ocpp.v201 import ChargePoint as Library, call, call_result
from ocpp.v201.enums import Action

from gateway.sim import badges, certificates, charging_profiles, files, reports
from gateway.sim.charger import Listening, SimCharger, SimEvse

# 1.6-style sim status -> 2.0.1 connector status, and the transaction's charging state.
_CONNECTOR = {"Available": "Available", "Unavailable": "Unavailable", "Faulted": "Faulted", "Reserved": "Reserved"}
_CHARGING_STATE = {"Charging": "Charging", "SuspendedEV": "SuspendedEV", "SuspendedEVSE": "SuspendedEVSE"}
_STOPPED_REASON = {"HardReset": "ImmediateReset", "SoftReset": "ImmediateReset", "UnlockCommand": "Local"}
_TRIGGER = {"Remote": "RemoteStop", "EVDisconnected": "EVCommunicationLost", "DeAuthorized": "Deauthorized",
            "ImmediateReset": "ResetCommand"}  # fmt: skip


class Sim201(SimCharger):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The device model, (component, variable) -> value; the writable ones take effect.
        self.variables: dict[tuple[str, str], str] = {
            ("OCPPCommCtrlr", "HeartbeatInterval"): "300",
            ("SampledDataCtrlr", "TxUpdatedInterval"): str(int(self.spec.meter_interval_s)),
            ("SampledDataCtrlr", "TxUpdatedMeasurands"): "Energy.Active.Import.Register,Power.Active.Import,SoC",
            ("SmartChargingCtrlr", "Enabled"): "true",
            ("SmartChargingCtrlr", "RateUnit"): "A,W",
            ("SmartChargingCtrlr", "ProfileStackLevel"): "8",
            ("AuthCtrlr", "AuthorizeRemoteStart"): "false",
            ("ChargingStation", "Model"): self.spec.model,
            ("ChargingStation", "VendorName"): self.spec.vendor,
        }
        self.read_only = {("ChargingStation", "Model"), ("ChargingStation", "VendorName"),
                          ("SmartChargingCtrlr", "RateUnit")}  # fmt: skip
        self._reported: dict[int, tuple[str, str | None]] = {}  # what the gateway was last told per EVSE

    def heartbeat_interval_s(self) -> float:
        return float(self.variables[("OCPPCommCtrlr", "HeartbeatInterval")])

    def make_protocol(self, ws: Any) -> Library:
        return _Protocol(self, ws)

    async def boot(self) -> None:
        result = await self.call(call.BootNotification(
            charging_station={"model": self.spec.model, "vendor_name": self.spec.vendor,
                              "serial_number": f"SIM-{self.spec.id}", "firmware_version": self.firmware_version},
            reason="PowerUp",
        ))  # fmt: skip
        self.variables[("OCPPCommCtrlr", "HeartbeatInterval")] = str(result.interval)
        self._reported.clear()

    async def heartbeat(self) -> None:
        await self.call(call.Heartbeat())

    async def send_status(self, evse: SimEvse, forced: bool = False) -> None:
        connector = _CONNECTOR.get(evse.status, "Occupied")
        state = _CHARGING_STATE.get(evse.status, "EVConnected") if evse.charging else None
        before = (None, None) if forced else self._reported.get(evse.id, (None, None))
        if connector != before[0]:
            await self.call(call.StatusNotification(timestamp=self.now(), connector_status=connector,
                                                    evse_id=evse.id, connector_id=1))  # fmt: skip
        if state is not None and state != before[1] and before[0] is not None:
            await self.call_durable(self._event(evse, "Updated", "ChargingStateChanged", {"charging_state": state}))
        self._reported[evse.id] = (connector, state)

    async def begin(self, evse: SimEvse, trigger: str, remote_start_id: int | None = None) -> None:
        assert evse.id_tag is not None
        token = {"id_token": evse.id_tag, "type": "Central" if remote_start_id is not None else "ISO14443"}
        if remote_start_id is None or self.variables[("AuthCtrlr", "AuthorizeRemoteStart")] == "true":
            auth = await self.call(call.Authorize(id_token=token))
            if auth.id_token_info["status"] != "Accepted":
                raise PermissionError(auth.id_token_info["status"])
        evse.tx_id = str(uuid.uuid4())
        info: dict[str, Any] = {"charging_state": "Charging"}
        if remote_start_id is not None:
            info["remote_start_id"] = remote_start_id
        self._reported[evse.id] = (self._reported.get(evse.id, ("Occupied", None))[0], "Charging")
        reservation, evse.reservation_id = evse.reservation_id, None
        await self.call_durable(self._event(evse, "Started", trigger, info, token=token, context="Transaction.Begin",
                                            evse_field=True, reservation_id=reservation))  # fmt: skip

    def meter_message(self, evse: SimEvse, context: str, offline: bool = False) -> Any:
        if evse.charging:
            return self._event(evse, "Updated", "MeterValuePeriodic" if context == "Sample.Periodic" else "Trigger",
                               {}, context=context, offline=offline)  # fmt: skip
        return call.MeterValues(evse_id=evse.id, meter_value=[self.meter_value(evse, context)])

    async def end(self, evse: SimEvse, reason: str) -> None:
        stopped = _STOPPED_REASON.get(reason, reason)
        trigger = _TRIGGER.get(stopped, "StopAuthorized")
        await self.call_durable(self._event(evse, "Ended", trigger,
                                            {"charging_state": "EVConnected", "stopped_reason": stopped},
                                            context="Transaction.End"))  # fmt: skip
        self._reported[evse.id] = (self._reported.get(evse.id, ("Occupied", None))[0], None)

    def _event(self, evse: SimEvse, event_type: str, trigger: str, info: dict[str, Any], *,
               token: dict | None = None, context: str | None = None, evse_field: bool = False,
               reservation_id: int | None = None, offline: bool = False) -> Any:  # fmt: skip
        assert evse.tx_id is not None
        seq, evse.seq_no = evse.seq_no, evse.seq_no + 1
        return call.TransactionEvent(
            event_type=event_type,
            timestamp=self.now(),
            trigger_reason=trigger,
            seq_no=seq,
            transaction_info={"transaction_id": evse.tx_id, **info},
            meter_value=[self.meter_value(evse, context)] if context else None,
            evse={"id": evse.id, "connector_id": 1} if evse_field else None,
            id_token=token,
            reservation_id=reservation_id,
            offline=offline or None,
        )

    @staticmethod
    def wire_value(value: float, unit: str) -> dict[str, Any]:
        return {"value": value, "unit_of_measure": {"unit": unit}}


class _Protocol(badges.Badges201, certificates.Certificates201, charging_profiles.ChargingProfiles201, files.Files201, reports.Reports201, Listening, Library):  # fmt: skip
    """The gateway's requests, answered as a station would; actions they start run outside the handler."""

    sim: Sim201

    @on(Action.request_start_transaction)
    def on_request_start(self, id_token: dict, remote_start_id: int, evse_id: int | None = None,
                         charging_profile: dict | None = None, **_: Any) -> call_result.RequestStartTransaction:  # fmt: skip
        profile = snake_to_camel_case(charging_profile) if charging_profile else None
        accepted = self.sim.remote_start(evse_id, id_token["id_token"], profile, remote_start_id)
        return call_result.RequestStartTransaction(status="Accepted" if accepted else "Rejected")

    @on(Action.request_stop_transaction)
    def on_request_stop(self, transaction_id: str, **_: Any) -> call_result.RequestStopTransaction:
        accepted = self.sim.remote_stop(transaction_id)
        return call_result.RequestStopTransaction(status="Accepted" if accepted else "Rejected")

    @on(Action.reset)
    def on_reset(self, type: str, evse_id: int | None = None, **_: Any) -> call_result.Reset:
        if type == "OnIdle" and any(e.charging for e in self.sim.evses.values()):
            return call_result.Reset(status="Scheduled")
        self.sim.reboot("ImmediateReset")
        return call_result.Reset(status="Accepted")

    @on(Action.change_availability)
    def on_change_availability(self, operational_status: str, evse: dict | None = None,
                               **_: Any) -> call_result.ChangeAvailability:  # fmt: skip
        status = self.sim.set_availability(evse["id"] if evse else None, operational_status == "Operative")
        return call_result.ChangeAvailability(status=status)

    @on(Action.unlock_connector)
    def on_unlock_connector(self, evse_id: int, connector_id: int, **_: Any) -> call_result.UnlockConnector:
        evse = self.sim.evses.get(evse_id)
        if evse is None or connector_id != 1:
            return call_result.UnlockConnector(status="UnknownConnector")
        if evse.charging:
            return call_result.UnlockConnector(status="OngoingAuthorizedTransaction")
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.get_variables)
    def on_get_variables(self, get_variable_data: list[dict], **_: Any) -> call_result.GetVariables:
        results = []
        for item in get_variable_data:
            component, variable = item["component"]["name"], item["variable"]["name"]
            key = (component, variable)
            result: dict[str, Any] = {"component": item["component"], "variable": item["variable"]}
            if key in self.sim.variables:
                result.update(attribute_status="Accepted", attribute_value=self.sim.variables[key])
            elif any(c == component for c, _ in self.sim.variables):
                result["attribute_status"] = "UnknownVariable"
            else:
                result["attribute_status"] = "UnknownComponent"
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)

    @on(Action.set_variables)
    def on_set_variables(self, set_variable_data: list[dict], **_: Any) -> call_result.SetVariables:
        results = []
        for item in set_variable_data:
            key = (item["component"]["name"], item["variable"]["name"])
            if key not in self.sim.variables:
                status = "UnknownVariable"
            elif key in self.sim.read_only:
                status = "Rejected"
            else:
                self.sim.variables[key] = item["attribute_value"]
                status = "Accepted"
                if key == ("SampledDataCtrlr", "TxUpdatedInterval") and item["attribute_value"].isdigit():
                    self.sim.spec.meter_interval_s = float(item["attribute_value"])
            results.append({"attribute_status": status, "component": item["component"], "variable": item["variable"]})
        return call_result.SetVariables(set_variable_result=results)

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, evse: dict | None = None,
                           **_: Any) -> call_result.TriggerMessage:  # fmt: skip
        accepted = self.sim.trigger(requested_message, (evse or {}).get("id"))
        return call_result.TriggerMessage(status="Accepted" if accepted else "NotImplemented")

    @on(Action.get_transaction_status)
    def on_get_transaction_status(self, transaction_id: str | None = None,
                                  **_: Any) -> call_result.GetTransactionStatus:  # fmt: skip
        ongoing = None
        if transaction_id is not None:
            ongoing = any(e.tx_id == transaction_id for e in self.sim.evses.values())
        return call_result.GetTransactionStatus(messages_in_queue=self.sim.backlog > 0, ongoing_indicator=ongoing)

    @on(Action.cost_updated)
    def on_cost_updated(self, total_cost: float, transaction_id: str, **_: Any) -> call_result.CostUpdated:
        return call_result.CostUpdated()

    @on(Action.publish_firmware)
    def on_publish_firmware(self, location: str, checksum: str, request_id: int,
                            **_: Any) -> call_result.PublishFirmware:  # fmt: skip
        return call_result.PublishFirmware(status="Rejected")  # a station, not a local controller

    @on(Action.unpublish_firmware)
    def on_unpublish_firmware(self, checksum: str, **_: Any) -> call_result.UnpublishFirmware:
        return call_result.UnpublishFirmware(status="NoFirmware")

    @on(Action.clear_cache)
    def on_clear_cache(self, **_: Any) -> call_result.ClearCache:
        return call_result.ClearCache(status="Accepted")

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status="UnknownVendorId")
