"""How a live point reads in the console: its text in the reader's language and units, the raw value pages style
and filter by (``data-v``), and its quality (``data-q``). The page and its live stream both show points through
:func:`show`, so what a page first shows and what the stream later sends are the same text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.i18n import DASH, N_, Formats
from gateway.points import ProcessImage

# Connector statuses (the OCPP 1.6 vocabulary every charger is shown in, and 2.0.1's Occupied).
STATUS = {
    "Available": N_("Available"), "Preparing": N_("Preparing"), "Charging": N_("Charging"),
    "SuspendedEV": N_("Suspended by the EV"), "SuspendedEVSE": N_("Suspended by the charger"),
    "Finishing": N_("Finishing"), "Reserved": N_("Reserved"), "Unavailable": N_("Unavailable"),
    "Faulted": N_("Faulted"), "Occupied": N_("Occupied"),
}  # fmt: skip
MODES = {"automatic": N_("automatic"), "manual": N_("manual")}

# What each point leaf is called; phase variants (power_w_l1) add the phase.
LABELS = {
    "online": N_("Connection"), "ocpp_version": N_("OCPP version"), "status": N_("Status"),
    "error_code": N_("Error code"), "power_w": N_("Power"), "energy_wh": N_("Meter reading"),
    "current_a": N_("Current"), "voltage_v": N_("Voltage"), "soc": N_("State of charge"),
    "transaction_id": N_("Session"), "reservation_id": N_("Reservation"), "firmware_status": N_("Firmware update"),
    "diagnostics_status": N_("Diagnostics upload"), "log_status": N_("Log upload"),
    "publish_firmware_status": N_("Firmware publishing"), "energy_import_wh": N_("Energy imported"),
    "energy_export_wh": N_("Energy exported"), "frequency_hz": N_("Frequency"), "last_error": N_("Last error"),
    "limit_w": N_("Limit"), "limit_reason": N_("Why this limit"), "grid_power_w": N_("Grid import"),
    "ev_power_w": N_("EV power"), "headroom_w": N_("Headroom"), "mode": N_("Mode"), "failsafe": N_("Fail-safe"),
    "session_energy_wh": N_("Session energy"), "departure_time": N_("Departure"),
    "energy_needed_wh": N_("Energy needed"), "ev_max_power_w": N_("EV maximum power"),
    "external_limit_w": N_("Outside limit"), "external_limit_source": N_("Outside limit set by"),
}  # fmt: skip
PHASES = ("l1", "l2", "l3")


@dataclass(frozen=True, slots=True)
class Shown:
    text: str
    raw: str  # for CSS and filters: "true"/"false", a number, a status word, "" when unknown
    quality: str  # good, uncertain, bad; "" when unknown
    ts: str | None = None

    def as_json(self) -> list[str]:
        return [self.text, self.raw, self.quality]


NOTHING = Shown(DASH, "", "")


def raw(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def show(image: ProcessImage, fmt: Formats, gettext: Callable[[str], str], name: str) -> Shown:
    point = image.get(name)
    if point is None:
        return NOTHING
    return Shown(text(fmt, gettext, name, point.value, image.unit(name)), raw(point.value), str(point.quality),
                 point.ts.isoformat())  # fmt: skip


def text(fmt: Formats, gettext: Callable[[str], str], name: str, value: Any, unit: str | None = None) -> str:
    leaf = name.rsplit("/", 1)[-1]
    if value is None or value == "":
        return DASH
    if leaf == "online":
        return gettext("Online") if value else gettext("Offline")
    if leaf == "failsafe":
        return gettext("Fail-safe") if value else gettext("Normal")
    if leaf == "status":
        return gettext(STATUS[value]) if value in STATUS else str(value)
    if leaf == "mode":
        return gettext(MODES[value]) if value in MODES else str(value)
    if leaf in ("transaction_id", "reservation_id") and value == 0:
        return DASH
    if leaf == "departure_time":
        return fmt.moment(value)
    if isinstance(value, bool):
        return gettext("yes") if value else gettext("no")
    if isinstance(value, int | float):
        return fmt.quantity(value, unit)
    return str(value)


def label(gettext: Callable[[str], str], leaf: str) -> str:
    """A point leaf as a column or row header: ``Power L1`` for power_w_l1."""
    base, _, phase = leaf.rpartition("_")
    if phase in PHASES and base in LABELS:
        return f"{gettext(LABELS[base])} {phase.upper()}"
    return gettext(LABELS[leaf]) if leaf in LABELS else leaf


ROLES = {"admin": N_("admin"), "operator": N_("operator"), "guest": N_("guest")}  # as the footer names them
