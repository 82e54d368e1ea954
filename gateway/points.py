"""The process image: the latest value of every live point, with its timestamp and quality.

Two times per point: ``ts``, when the value was true as its source says (a charger's MeterValue timestamp, an
OPC UA SourceTimestamp; what the API, MQTT and OPC UA show), and ``received``, when the gateway took it, on the
gateway's own clock (what freshness and "has it settled since" are judged by: a charger's clock is not ours).

Point names are paths in the site's words: ``chargers/CP01/online``, ``chargers/CP01/evse/1/power_w``,
``meters/grid/power_w``, ``site/limit_w``. The last segment says what the value is; ``SCHEMA`` gives its
type and unit, so bridges derive OPC UA nodes and MQTT payloads from names, never from hand-written lists.

Consumers follow changes through a :class:`Feed`: it keeps only the latest value per point (coalescing), so it
is bounded by the number of points and a slow consumer never slows the producer; what it coalesced is counted.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.clock import iso, utcnow


class Quality(enum.StrEnum):
    good = "good"
    uncertain = "uncertain"
    bad = "bad"


@dataclass(frozen=True, slots=True)
class Point:
    value: Any
    ts: datetime  # as the source says
    quality: Quality = Quality.good
    received: datetime | None = None  # on the gateway's clock; the image always fills it in

    def as_json(self) -> dict[str, Any]:
        return {"value": self.value, "ts": iso(self.ts), "quality": str(self.quality)}


@dataclass(frozen=True, slots=True)
class Kind:
    """What a point's last name segment means."""

    type: type
    unit: str | None
    description: str


SCHEMA: dict[str, Kind] = {
    "online": Kind(bool, None, "Connected to the gateway"),
    "ocpp_version": Kind(str, None, "OCPP version negotiated at connect"),
    "status": Kind(str, None, "Connector or charger status (OCPP 1.6 vocabulary)"),
    "error_code": Kind(str, None, "Last error code reported with the status"),
    "power_w": Kind(float, "W", "Active power"),
    "energy_wh": Kind(float, "Wh", "Active energy imported (meter register)"),
    "current_a": Kind(float, "A", "Current, highest phase"),
    "voltage_v": Kind(float, "V", "Voltage"),
    "soc": Kind(float, "%", "State of charge of the EV"),
    "transaction_id": Kind(int, None, "Open transaction (gateway id), 0 when none"),
    "reservation_id": Kind(int, None, "Reservation the charger accepted for this EVSE (OCPP id), 0 when none"),
    "firmware_status": Kind(str, None, "Last firmware update step the charger reported"),
    "diagnostics_status": Kind(str, None, "Last diagnostics upload step the charger reported (OCPP 1.6)"),
    "log_status": Kind(str, None, "Last log upload step the charger reported"),
    "publish_firmware_status": Kind(str, None, "Last firmware publishing step of a 2.0.1 local controller"),
    "energy_import_wh": Kind(float, "Wh", "Active energy imported (delivered to the site)"),
    "energy_export_wh": Kind(float, "Wh", "Active energy exported"),
    "frequency_hz": Kind(float, "Hz", "Grid frequency"),
    "last_error": Kind(str, None, "Why the device last failed to answer"),
    "limit_w": Kind(float, "W", "Limit in force (an EVSE: the load cap's; the site: the strictest of its limits)"),
    "limit_reason": Kind(str, None, "Why the EVSE has the limit it has"),
    "grid_power_w": Kind(float, "W", "The site's import, as the grid meter measures it"),
    "ev_power_w": Kind(float, "W", "What the EVs under the load cap draw together"),
    "headroom_w": Kind(float, "W", "What the EVs may take: site limit - load the gateway does not steer"),
    "mode": Kind(str, None, "Load cap mode: automatic or manual"),
    "failsafe": Kind(bool, None, "The grid meter is stale: the EVs together are held to the fallback limit"),
    "session_energy_wh": Kind(float, "Wh", "Energy of the open transaction so far"),
    "departure_time": Kind(str, None, "When the EV says it leaves (ISO 8601 UTC; OCPP 2.0.1 NotifyEVChargingNeeds)"),
    "energy_needed_wh": Kind(float, "Wh", "Energy the EV's session needs in all, counted from its start"),
    "ev_max_power_w": Kind(float, "W", "The most the EV says it can take"),
    "external_limit_w": Kind(float, "W", "Limit an outside source put on the charger or EVSE, as the charger "
                             "reports it (OCPP 2.0.1 NotifyChargingLimit); none once cleared"),
    "external_limit_source": Kind(str, None, "Who set that limit: EMS, SO (system operator), CSO or Other"),
    "registration": Kind(int, None, "The charger's present registration: a new number at each accepted boot or "
                         "reconnect, 0 while it is not connected"),
    "control": Kind(str, None, "How the load cap steers the charger: evse (a limit per EVSE), each_evse (one limit "
                    "for every EVSE alike), charger (one limit for the charger as a whole), none (it refused every "
                    "charging profile: its rating is counted as load the gateway cannot steer)"),
    "controllable": Kind(bool, None, "The load cap can steer the charger (its control is not none)"),
    "baseline_w": Kind(float, "W", "The maximum the charger holds for good, should the gateway fail (its baseline "
                       "profile); none until it accepted one"),
    "excess_w": Kind(float, "W", "By how much the grid import exceeds the site limit (0 when under)"),
    "completion_time": Kind(str, None, "When the EV will have the energy it needs at its present limit (ISO 8601 "
                            "UTC)"),
    "misses_departure": Kind(bool, None, "At its present limit the EV will not have the energy it needs by the "
                             "departure it said"),
    "queued": Kind(int, None, "Durable messages waiting for their receiver"),
    "queued_bytes": Kind(int, "B", "Their size (payload bytes)"),
    "dropped": Kind(int, None, "Telemetry messages dropped to keep the disk budget (since the store was made)"),
    "oldest_age_s": Kind(float, "s", "Age of the oldest waiting message (0 when none waits)"),
    "error_info": Kind(str, None, "Free text the charger gave with its last error (OCPP info)"),
    "vendor_error_code": Kind(str, None, "The charger maker's own error code given with its last status"),
    "active": Kind(int, None, "Alarms active (acknowledged or not)"),
    "unacknowledged": Kind(int, None, "Alarms waiting for an acknowledgement (active or returned)"),
    "shelved": Kind(int, None, "Alarms shelved by an operator"),
    "suppressed": Kind(int, None, "Alarms masked by another alarm"),
    "out_of_service": Kind(int, None, "Alarms out of service (maintenance)"),
    "disk_free_mb": Kind(float, "MB", "Free space on the state directory's disk"),
    "days_left": Kind(float, "d", "Days until the certificate expires"),
}
for _phase in ("l1", "l2", "l3"):
    SCHEMA[f"power_w_{_phase}"] = Kind(float, "W", f"Active power, phase {_phase.upper()}")
    SCHEMA[f"current_a_{_phase}"] = Kind(float, "A", f"Current, phase {_phase.upper()}")
    SCHEMA[f"voltage_v_{_phase}"] = Kind(float, "V", f"Voltage, phase {_phase.upper()}-N")


# What flows through a charger or an EVSE, as opposed to its counters and states: zero when nothing flows,
# and what a meter on the charger's supply says instead of the charger.
FLOW = ("power_w", "power_w_l1", "power_w_l2", "power_w_l3", "current_a", "current_a_l1", "current_a_l2",
        "current_a_l3")  # fmt: skip


def kind_of(name: str) -> Kind | None:
    return SCHEMA.get(name.rsplit("/", 1)[-1])


def charger_point(charger_id: str, leaf: str) -> str:
    return f"chargers/{charger_id}/{leaf}"


def evse_point(charger_id: str, evse: int, leaf: str) -> str:
    return f"chargers/{charger_id}/evse/{evse}/{leaf}"


class Feed:
    """Changes since the consumer last looked, latest value per point."""

    def __init__(self, image: ProcessImage, prefix: str) -> None:
        self._image = image
        self.prefix = prefix
        self._pending: dict[str, Point] = {}
        self._ready = asyncio.Event()
        self.coalesced = 0  # updates overwritten before the consumer read them

    def _offer(self, name: str, point: Point) -> None:
        if name in self._pending:
            self.coalesced += 1
        self._pending[name] = point
        self._ready.set()

    async def get(self) -> dict[str, Point]:
        """Wait for at least one change; return all changes since the last call."""
        await self._ready.wait()
        return self.get_nowait()

    def get_nowait(self) -> dict[str, Point]:
        changes, self._pending = self._pending, {}
        self._ready.clear()
        return changes

    def close(self) -> None:
        self._image._feeds.discard(self)


class ProcessImage:
    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._points: dict[str, Point] = {}
        self._feeds: set[Feed] = set()
        self._clock = clock
        self._units: dict[str, str] = {}  # units drivers declared for points the schema does not name

    def declare_unit(self, name: str, unit: str) -> None:
        """The unit of a point outside the schema (an inline register, say): for the API and the bridges."""
        self._units[name] = unit

    def unit(self, name: str) -> str | None:
        kind = kind_of(name)
        return self._units.get(name) or (kind.unit if kind else None)

    def set(self, name: str, value: Any, ts: datetime | None = None, quality: Quality = Quality.good) -> bool:
        """Record a value; returns True (and tells the feeds) when value or quality changed."""
        received = self._clock()
        return self._put(name, Point(value, ts or received, quality, received))

    def _put(self, name: str, point: Point) -> bool:
        old = self._points.get(name)
        self._points[name] = point
        if old is not None and old.value == point.value and old.quality == point.quality:
            return False
        for feed in self._feeds:
            if name.startswith(feed.prefix):
                feed._offer(name, point)
        return True

    def update(self, values: dict[str, Any], ts: datetime | None = None) -> None:
        ts = ts or self._clock()
        for name, value in values.items():
            self.set(name, value, ts)

    def mark(self, prefix: str, quality: Quality) -> None:
        """Set the quality of every point under a prefix (a device stopped answering, a charger dropped)."""
        self.mark_points([name for name, _ in self.items(prefix)], quality)

    def mark_points(self, names: Iterable[str], quality: Quality) -> None:
        """Set the quality of these points, keeping their values and timestamps (both)."""
        for name in names:
            point = self._points.get(name)
            if point is not None and point.quality != quality:
                self._put(name, Point(point.value, point.ts, quality, point.received))

    def get(self, name: str) -> Point | None:
        return self._points.get(name)

    def value(self, name: str, default: Any = None) -> Any:
        point = self._points.get(name)
        return default if point is None else point.value

    def items(self, prefix: str = "") -> Iterator[tuple[str, Point]]:
        return ((n, p) for n, p in self._points.items() if n.startswith(prefix))

    def snapshot(self, prefix: str = "") -> dict[str, Point]:
        return dict(self.items(prefix))

    def feed(self, prefix: str = "") -> Feed:
        feed = Feed(self, prefix)
        self._feeds.add(feed)
        return feed

    def __len__(self) -> int:
        return len(self._points)
