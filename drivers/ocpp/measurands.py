"""What the numbers in a MeterValue mean: sampled values (1.6 or 2.0.1 shape) -> one version-blind Reading.

OCPP 1.6 sends values as strings with a ``unit`` (default Wh, and the measurand defaults to the energy
register); 2.0.1 sends numbers with ``unitOfMeasure {unit, multiplier}``. Energy always comes out in Wh and
power in W. Values measured at the grid side of the charger (location Inlet) or on its body are not the EV's
and are left out; signed data and values that are not numbers are skipped, never fatal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
CURRENT = "Current.Import"
VOLTAGE = "Voltage"
SOC = "SoC"

_DECIMALS = 6  # kept of a scaled value: far below any meter's resolution
_SCALE = {"wh": 1.0, "kwh": 1000.0, "w": 1.0, "kw": 1000.0, "a": 1.0, "v": 1.0, "percent": 1.0}
_DEFAULT_UNIT = {ENERGY: "Wh", POWER: "W", CURRENT: "A", VOLTAGE: "V", SOC: "Percent"}
_EV_SIDE = {None, "Outlet", "EV", "Cable"}
_TEXT_FIELDS = ("context", "location", "measurand", "phase", "format", "unit")
_PHASES = {"L1": "l1", "L2": "l2", "L3": "l3", "L1-N": "l1", "L2-N": "l2", "L3-N": "l3"}


@dataclass
class Reading:
    """The EV-side numbers of one meter value; None where the charger did not say."""

    energy_wh: float | None = None
    power_w: float | None = None
    soc: float | None = None
    current_a: dict[str, float] = field(default_factory=dict)  # by phase: l1, l2, l3, or "" when unphased
    voltage_v: dict[str, float] = field(default_factory=dict)
    power_by_phase_w: dict[str, float] = field(default_factory=dict)
    energy_by_phase_wh: dict[str, float] = field(default_factory=dict)
    context: str | None = None  # Sample.Periodic, Transaction.Begin, Transaction.End, ...

    def points(self) -> dict[str, float]:
        """The values as EVSE point leaves: power_w, energy_wh, soc, current_a, current_a_l1, ..."""
        out: dict[str, float] = {}
        if self.energy_wh is not None:
            out["energy_wh"] = self.energy_wh
        power = self.total_power_w
        if power is not None:
            out["power_w"] = power
        if self.soc is not None:
            out["soc"] = self.soc
        if self.current_a:
            out["current_a"] = max(self.current_a.values())
        for phase, amps in self.current_a.items():
            if phase:
                out[f"current_a_{phase}"] = amps
        for phase, volts in self.voltage_v.items():
            out[f"voltage_v_{phase}" if phase else "voltage_v"] = volts
        for phase, watts in self.power_by_phase_w.items():
            out[f"power_w_{phase}"] = watts
        return out

    @property
    def total_power_w(self) -> float | None:
        if self.power_w is not None:
            return self.power_w
        return sum(self.power_by_phase_w.values()) if self.power_by_phase_w else None

    @property
    def total_energy_wh(self) -> float | None:
        if self.energy_wh is not None:
            return self.energy_wh
        return sum(self.energy_by_phase_wh.values()) if self.energy_by_phase_wh else None


def read(sampled_values: list[dict[str, Any]]) -> Reading:
    """Sampled values of one MeterValue (camelCase, as on the wire) -> Reading."""
    reading = Reading()
    for sv in sampled_values:
        if not isinstance(sv, dict) or not all(isinstance(sv.get(k), (str, type(None))) for k in _TEXT_FIELDS):
            continue
        reading.context = reading.context or sv.get("context")
        if sv.get("location") not in _EV_SIDE:
            continue
        measurand = sv.get("measurand") or ENERGY
        value = _number(sv, measurand)
        if value is None:
            continue
        phase = _PHASES.get(sv["phase"], "") if sv.get("phase") else ""
        if sv.get("phase") and not phase:
            continue  # N, L1-L2, ...: not a phase we add up
        if measurand == ENERGY:
            if phase:
                reading.energy_by_phase_wh[phase] = value
            else:
                reading.energy_wh = value
        elif measurand == POWER:
            if phase:
                reading.power_by_phase_w[phase] = value
            else:
                reading.power_w = value
        elif measurand == CURRENT:
            reading.current_a[phase] = value
        elif measurand == VOLTAGE:
            reading.voltage_v[phase] = value
        elif measurand == SOC:
            reading.soc = value
    if reading.energy_wh is None and reading.energy_by_phase_wh:
        reading.energy_wh = reading.total_energy_wh
    return reading


def energy_at(meter_values: list[dict[str, Any]], context: str | None = None) -> float | None:
    """The energy register in a list of MeterValue objects, from the sample with this context when given."""
    found = None
    for mv in meter_values:
        sampled = mv.get("sampledValue") if isinstance(mv, dict) else None
        if not isinstance(sampled, list):
            continue
        if context is not None and not any(isinstance(sv, dict) and sv.get("context") == context for sv in sampled):
            continue
        energy = read(sampled).energy_wh
        if energy is not None:
            found = energy
    return found


def _number(sv: dict[str, Any], measurand: str) -> float | None:
    if sv.get("format") == "SignedData":
        return None
    raw = sv.get("value")
    try:
        value = float(raw) if isinstance(raw, (str, int, float)) and not isinstance(raw, bool) else None
    except ValueError:
        return None
    if value is None or not math.isfinite(value):
        return None
    unit_of_measure = sv.get("unitOfMeasure")
    multiplier = 0
    if isinstance(unit_of_measure, dict):  # 2.0.1
        unit = unit_of_measure.get("unit") or _DEFAULT_UNIT.get(measurand, "")
        multiplier = unit_of_measure.get("multiplier", 0)
        if not (isinstance(multiplier, int) and -6 <= multiplier <= 6):
            multiplier = 0
    else:
        unit = sv.get("unit") or _DEFAULT_UNIT.get(measurand, "")
    scale = _SCALE.get(str(unit).lower())
    if scale is None:
        return None  # a unit we cannot turn into ours (varh, Celsius, ...)
    if scale == 1.0 and multiplier == 0:
        return value
    # 12.3456 kWh is 12345.6 Wh, not 12345.599999999999: binary floats scaled by ten carry noise into the records
    return round(value * scale * 10.0**multiplier, _DECIMALS)
