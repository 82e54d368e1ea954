"""Charging limits as the charging profiles each OCPP version speaks, without I/O.

Four profiles a charger holds, each with a fixed id so that a new one replaces the old:
- baseline: ChargePointMaxProfile (1.6) / ChargingStationMaxProfile (2.0.1) on the charger as a whole, stack 0,
  never expiring -- what keeps the site safe if the gateway dies;
- ceiling: the same purpose one stack level higher, the charger's rating, valid for a short while and renewed
  while its sessions are steered -- it lifts the baseline as long as the gateway is there to steer;
- default: TxDefaultProfile on the charger as a whole (connector / EVSE 0), stack 0 -- what a session starts
  with, the minimum current, until the load cap speaks (the launch reserve);
- dynamic: the load cap's limit, one stack level higher, valid for a short while and renewed. How it is spelled
  depends on how the charger can be steered (its *control*, learnt from what it refuses, see
  :mod:`drivers.ocpp.steering`):
  - evse: a TxProfile on the session running on the EVSE (it ends with the session, so the next one starts on
    the default), else a TxDefaultProfile on the EVSE;
  - each_evse: a TxDefaultProfile on connector / EVSE 0 -- the same limit for every EVSE;
  - charger: the charger's maximum (the ceiling's profile, replaced) -- one limit for all its EVSEs together.
When the short-lived ones lapse, the default holds under the baseline.
A limit is never rounded up: 1.6 and 2.0.1 currents to the tenth of an ampere, powers to the watt, down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from drivers.ocpp.frames import V16
from gateway.clock import iso

PROFILE_ID = {"baseline": 1000, "default": 1001, "ceiling": 1002}
CHARGER_WIDE = ("baseline", "ceiling", "default")  # on connector / EVSE 0
DYNAMIC_ID = 2000  # + EVSE number
CONTROLS = ("evse", "each_evse", "charger")  # how a charger's sessions can be steered, finest first


@dataclass(frozen=True)
class Capabilities:
    """What a charger accepts, as it said when asked (GetConfiguration / GetVariables)."""

    amps: bool = True  # schedules in A
    watts: bool = False  # schedules in W
    max_stack_level: int = 8

    @property
    def unit(self) -> str:
        return "A" if self.amps or not self.watts else "W"


def capabilities_16(configuration_key: list[dict[str, Any]]) -> Capabilities:
    """From a 1.6 GetConfiguration answer (ChargingScheduleAllowedChargingRateUnit, ChargeProfileMaxStackLevel)."""
    values = {k.get("key"): k.get("value") for k in configuration_key if isinstance(k, dict)}
    units = str(values.get("ChargingScheduleAllowedChargingRateUnit") or "Current").replace(" ", "").split(",")
    return Capabilities("Current" in units, "Power" in units, _int(values.get("ChargeProfileMaxStackLevel"), 8))


def capabilities_201(get_variable_result: list[dict[str, Any]]) -> Capabilities:
    """From a 2.0.1 GetVariables answer (SmartChargingCtrlr RateUnit and ProfileStackLevel)."""
    values = {r["variable"]["name"]: r.get("attributeValue") for r in get_variable_result
              if isinstance(r, dict) and r.get("attributeStatus") == "Accepted"}  # fmt: skip
    units = str(values.get("RateUnit") or "A").replace(" ", "").split(",")
    return Capabilities("A" in units, "W" in units, _int(values.get("ProfileStackLevel"), 8))


def limit_in(unit: str, limit_w: float, phases: int, voltage_v: float) -> float:
    """The limit in the charger's unit, rounded down: amperes per phase to 0.1 A, or whole watts."""
    if unit == "A":
        return math.floor(limit_w / (voltage_v * phases) * 10 + 1e-9) / 10
    return float(math.floor(limit_w + 1e-9))


def profile_request(version: str, purpose: str, evse: int, limit_w: float, phases: int, voltage_v: float,
                    caps: Capabilities, now: datetime, valid_s: int | None = None,
                    transaction_id: int | str | None = None, control: str = "evse",
                    unit: str | None = None) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """The SetChargingProfile request (action, payload) for a limit; `unit` (A or W) instead of the charger's
    preferred one, `control` for a dynamic limit (module docstring)."""
    unit = unit or caps.unit
    period: dict[str, Any] = {"startPeriod": 0, "limit": limit_in(unit, limit_w, phases, voltage_v)}
    if unit == "A":
        period["numberPhases"] = phases
    kind, stack, profile_id, target = _placed(purpose, control, evse, transaction_id is not None, caps)
    if kind != "TxProfile":
        transaction_id = None
    if kind == "ChargePointMaxProfile" and version != V16:
        kind = "ChargingStationMaxProfile"
    start = iso(now)
    schedule = {"startSchedule": start, "chargingRateUnit": unit, "chargingSchedulePeriod": [period]}
    if version == V16:
        profile: dict[str, Any] = {"chargingProfileId": profile_id, "stackLevel": stack,
                                   "chargingProfilePurpose": kind, "chargingProfileKind": "Absolute",
                                   "chargingSchedule": schedule}  # fmt: skip
    else:
        profile = {"id": profile_id, "stackLevel": stack, "chargingProfilePurpose": kind,
                   "chargingProfileKind": "Absolute", "chargingSchedule": [{"id": profile_id, **schedule}]}
    if transaction_id is not None:
        profile["transactionId"] = int(transaction_id) if version == V16 else str(transaction_id)
    if valid_s:
        profile["validFrom"], profile["validTo"] = start, iso(now + timedelta(seconds=valid_s))
    if version == V16:
        return "SetChargingProfile", {"connectorId": target, "csChargingProfiles": profile}
    return "SetChargingProfile", {"evseId": target, "chargingProfile": profile}


def _placed(purpose: str, control: str, evse: int, in_transaction: bool,
            caps: Capabilities) -> tuple[str, int, int, int]:  # fmt: skip
    """(purpose as 1.6 names it, stack level, profile id, connector / EVSE) of a limit."""
    lifted = min(1, caps.max_stack_level)
    if purpose == "dynamic" and control != "evse":
        if evse != 0:
            raise ValueError(f"a charger steered as a whole ({control}) takes its limit on EVSE 0, not {evse}")
        purpose = "ceiling" if control == "charger" else "dynamic"
    if purpose == "ceiling" and caps.max_stack_level < 1:
        raise ValueError("it takes stack level 0 only: nothing can lift its baseline")
    if purpose in ("baseline", "ceiling"):
        return "ChargePointMaxProfile", 0 if purpose == "baseline" else lifted, PROFILE_ID[purpose], 0
    if purpose == "default":
        return "TxDefaultProfile", 0, PROFILE_ID[purpose], 0
    kind = "TxProfile" if in_transaction and evse else "TxDefaultProfile"
    return kind, lifted, DYNAMIC_ID + evse, evse


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
