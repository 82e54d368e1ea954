"""The simulated charger in OCPP 1.6J: Core, smart charging and remote trigger, from the charger's side."""

from __future__ import annotations

from typing import Any

from ocpp.charge_point import snake_to_camel_case
from ocpp.exceptions import NotSupportedError
from ocpp.routing import on
from ocpp.v16 import ChargePoint as Library, call, call_result
from ocpp.v16.enums import Action

from gateway.sim import badges, certificates, charging_profiles, files, reports
from gateway.sim.charger import Listening, SimCharger, SimEvse

# Configuration keys a 1.6 charger reports; the writable ones take effect.
_READ_ONLY = {"NumberOfConnectors", "ChargingScheduleAllowedChargingRateUnit", "ChargeProfileMaxStackLevel",
              "SupportedFeatureProfiles"}  # fmt: skip


# The feature profile of each request that is not Core: a charger answers NotSupported outside its profiles.
_FEATURE_PROFILES = ("Core", "FirmwareManagement", "LocalAuthListManagement", "Reservation", "SmartCharging",
                     "RemoteTrigger")  # fmt: skip
_PROFILE_OF = {
    "GetDiagnostics": "FirmwareManagement", "UpdateFirmware": "FirmwareManagement",
    "GetLocalListVersion": "LocalAuthListManagement", "SendLocalList": "LocalAuthListManagement",
    "ReserveNow": "Reservation", "CancelReservation": "Reservation",
    "SetChargingProfile": "SmartCharging", "ClearChargingProfile": "SmartCharging",
    "GetCompositeSchedule": "SmartCharging", "TriggerMessage": "RemoteTrigger",
}  # fmt: skip


class Refused(Exception):
    """The gateway did not accept the badge."""


class Sim16(SimCharger):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = {
            "HeartbeatInterval": "300",
            "MeterValueSampleInterval": str(int(self.spec.meter_interval_s)),
            "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import,Current.Import,SoC",
            "NumberOfConnectors": str(self.spec.evses),
            "ChargingScheduleAllowedChargingRateUnit": "Current,Power",
            "ChargeProfileMaxStackLevel": "8",
            "AuthorizeRemoteTxRequests": "false",
            "SupportedFeatureProfiles": ",".join(_FEATURE_PROFILES),
        }

    def make_protocol(self, ws: Any) -> Library:
        return _Protocol(self, ws)

    def heartbeat_interval_s(self) -> float:
        return float(self.config["HeartbeatInterval"])

    async def boot(self) -> None:
        result = await self.call(call.BootNotification(
            charge_point_model=self.spec.model, charge_point_vendor=self.spec.vendor,
            charge_point_serial_number=f"SIM-{self.spec.id}", firmware_version=self.firmware_version,
        ))  # fmt: skip
        self.config["HeartbeatInterval"] = str(result.interval)

    async def heartbeat(self) -> None:
        await self.call(call.Heartbeat())

    async def send_status(self, evse: SimEvse, forced: bool = False) -> None:
        await self.call(call.StatusNotification(connector_id=evse.id, error_code="NoError", status=evse.status,
                                                timestamp=self.now()))  # fmt: skip

    async def begin(self, evse: SimEvse, trigger: str, remote_start_id: int | None = None) -> None:
        assert evse.id_tag is not None
        if trigger != "RemoteStart" or self.config["AuthorizeRemoteTxRequests"] == "true":
            auth = await self.call(call.Authorize(id_tag=evse.id_tag))
            if auth.id_tag_info["status"] != "Accepted":
                raise Refused(auth.id_tag_info["status"])
        reservation, evse.reservation_id = evse.reservation_id, None
        result = await self.call(call.StartTransaction(connector_id=evse.id, id_tag=evse.id_tag,
                                                       meter_start=int(evse.meter_wh), timestamp=self.now(),
                                                       reservation_id=reservation))  # fmt: skip
        evse.tx_id = str(result.transaction_id)
        await self.call_durable(self.meter_message(evse, "Transaction.Begin"))
        if result.id_tag_info["status"] != "Accepted":
            self.spawn(self.stop_session(evse.id, "DeAuthorized"))

    def meter_message(self, evse: SimEvse, context: str, offline: bool = False) -> call.MeterValues:
        return call.MeterValues(
            connector_id=evse.id,
            transaction_id=int(evse.tx_id) if evse.tx_id else None,
            meter_value=[self.meter_value(evse, context)],
        )

    async def end(self, evse: SimEvse, reason: str) -> None:
        assert evse.tx_id is not None
        await self.call_durable(call.StopTransaction(
            meter_stop=int(evse.meter_wh), timestamp=self.now(), transaction_id=int(evse.tx_id), reason=reason,
            id_tag=evse.id_tag, transaction_data=[self.meter_value(evse, "Transaction.End")],
        ))  # fmt: skip

    @staticmethod
    def wire_value(value: float, unit: str) -> dict[str, Any]:
        return {"value": str(value), "unit": unit}  # 1.6 sends values as strings


class _Protocol(badges.Badges16, certificates.Certificates16, charging_profiles.ChargingProfiles16, files.Files16, reports.Reports16, Listening, Library):  # fmt: skip
    """The gateway's requests, answered as a charger would; actions they start run outside the handler."""

    sim: Sim16

    async def _handle_call(self, msg: Any) -> Any:
        profile = _PROFILE_OF.get(msg.action)
        if profile is not None and profile not in self.sim.config["SupportedFeatureProfiles"].split(","):
            raise NotSupportedError(details={"cause": f"{msg.action}: this charger has no {profile} profile"})
        return await super()._handle_call(msg)

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, connector_id: int | None = None, charging_profile: dict | None = None,
                        **_: Any) -> call_result.RemoteStartTransaction:  # fmt: skip
        profile = snake_to_camel_case(charging_profile) if charging_profile else None
        accepted = self.sim.remote_start(connector_id, id_tag, profile, remote_start_id=0)
        return call_result.RemoteStartTransaction(status="Accepted" if accepted else "Rejected")

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int, **_: Any) -> call_result.RemoteStopTransaction:
        accepted = self.sim.remote_stop(str(transaction_id))
        return call_result.RemoteStopTransaction(status="Accepted" if accepted else "Rejected")

    @on(Action.reset)
    def on_reset(self, type: str, **_: Any) -> call_result.Reset:
        self.sim.reboot("HardReset" if type == "Hard" else "SoftReset")
        return call_result.Reset(status="Accepted")

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, type: str, **_: Any) -> call_result.ChangeAvailability:
        return call_result.ChangeAvailability(status=self.sim.set_availability(connector_id, type == "Operative"))

    @on(Action.unlock_connector)
    def on_unlock_connector(self, connector_id: int, **_: Any) -> call_result.UnlockConnector:
        evse = self.sim.evses.get(connector_id)
        if evse is None:
            return call_result.UnlockConnector(status="NotSupported")
        if evse.charging:
            self.sim.spawn(self.sim.stop_session(evse.id, "UnlockCommand"))
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> call_result.GetConfiguration:
        wanted = key or list(self.sim.config)
        known = [{"key": k, "readonly": k in _READ_ONLY, "value": self.sim.config[k]} for k in wanted
                 if k in self.sim.config]  # fmt: skip
        unknown = [k for k in wanted if k not in self.sim.config]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str, **_: Any) -> call_result.ChangeConfiguration:
        if key not in self.sim.config:
            return call_result.ChangeConfiguration(status="NotSupported")
        if key in _READ_ONLY:
            return call_result.ChangeConfiguration(status="Rejected")
        if key in ("HeartbeatInterval", "MeterValueSampleInterval"):
            if not value.isdigit():
                return call_result.ChangeConfiguration(status="Rejected")
            if key == "MeterValueSampleInterval":
                self.sim.spec.meter_interval_s = float(value)
        self.sim.config[key] = value
        return call_result.ChangeConfiguration(status="Accepted")

    @on(Action.clear_cache)
    def on_clear_cache(self, **_: Any) -> call_result.ClearCache:
        return call_result.ClearCache(status="Accepted")

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None,
                           **_: Any) -> call_result.TriggerMessage:  # fmt: skip
        accepted = self.sim.trigger(requested_message, connector_id)
        return call_result.TriggerMessage(status="Accepted" if accepted else "NotImplemented")

    @on(Action.extended_trigger_message)
    def on_extended_trigger_message(self, requested_message: str, connector_id: int | None = None,
                                    **_: Any) -> call_result.ExtendedTriggerMessage:  # fmt: skip
        accepted = self.sim.trigger(requested_message, connector_id)
        return call_result.ExtendedTriggerMessage(status="Accepted" if accepted else "NotImplemented")
