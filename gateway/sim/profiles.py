"""Charging profiles as a charger applies them, without I/O: which limit holds at a given moment.

Both versions' profiles are read into one :class:`Profile`. Per purpose, the valid profile with the highest
stack level that has a period in effect wins; a transaction's TxProfile overrides TxDefaultProfile; the
charger-wide maximum (ChargePointMaxProfile / ChargingStationMaxProfile) caps the result. The composite
schedule is that limit over a stretch of time, one period per change (GetCompositeSchedule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gateway.clock import parse_iso

MAX, TX_DEFAULT, TX = "max", "tx_default", "tx"
_PURPOSE = {"ChargePointMaxProfile": MAX, "ChargingStationMaxProfile": MAX, "TxDefaultProfile": TX_DEFAULT,
            "TxProfile": TX}  # fmt: skip
_RECURRENCE = {"Daily": 86400, "Weekly": 7 * 86400}


@dataclass(frozen=True)
class Period:
    start_s: int
    limit: float
    phases: int | None = None


@dataclass(frozen=True)
class Profile:
    id: int
    stack_level: int
    purpose: str  # max, tx_default, tx
    kind: str  # Absolute, Recurring, Relative
    unit: str  # W or A
    periods: tuple[Period, ...]
    recurrency: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    start: datetime | None = None
    duration_s: int | None = None
    transaction_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)  # as received (camelCase): what is reported

    def valid_at(self, now: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= now) and (self.valid_to is None or now < self.valid_to)

    def limit_at(self, now: datetime, tx_start: datetime | None) -> Period | None:
        """The period in effect at `now`, None when this profile says nothing then."""
        if not self.valid_at(now):
            return None
        if self.kind == "Relative":
            start = tx_start
        else:
            start = self.start or self.valid_from
        if start is None:
            return None
        offset = (now - start).total_seconds()
        if self.kind == "Recurring" and self.recurrency in _RECURRENCE and offset >= 0:
            offset %= _RECURRENCE[self.recurrency]
        if offset < 0 or (self.duration_s is not None and offset >= self.duration_s):
            return None
        current = None
        for period in self.periods:
            if period.start_s <= offset:
                current = period
        return current

    def changes(self, start: datetime, end: datetime, tx_start: datetime | None) -> set[datetime]:
        """The moments strictly between start and end when what this profile says may change."""
        moments = {t for t in (self.valid_from, self.valid_to) if t is not None}
        base = tx_start if self.kind == "Relative" else (self.start or self.valid_from)
        if base is not None:
            offsets = [p.start_s for p in self.periods] + ([self.duration_s] if self.duration_s is not None else [])
            rounds = [0]
            if self.kind == "Recurring" and self.recurrency in _RECURRENCE:
                every = _RECURRENCE[self.recurrency]
                first = max(0, math.floor((start - base).total_seconds() / every))
                rounds = [every * k for k in range(first, math.ceil((end - base).total_seconds() / every) + 1)]
            moments |= {base + timedelta(seconds=r + o) for r in rounds for o in offsets}
        return {t for t in moments if start < t < end}


def purpose_of(name: str | None) -> str | None:
    """chargingProfilePurpose (either version's name) -> max, tx_default or tx."""
    return None if name is None else _PURPOSE.get(name, name)


def from_ocpp(profile: dict[str, Any], received: datetime) -> Profile:
    """csChargingProfiles (1.6) or chargingProfile (2.0.1), camelCase as on the wire."""
    schedule = profile["chargingSchedule"]
    if isinstance(schedule, list):  # 2.0.1 allows up to three; the first is the one in force
        schedule = schedule[0]
    start = schedule.get("startSchedule")
    kind = profile["chargingProfileKind"]
    return Profile(
        id=int(profile.get("chargingProfileId", profile.get("id", 0))),
        stack_level=int(profile["stackLevel"]),
        purpose=_PURPOSE.get(profile["chargingProfilePurpose"], profile["chargingProfilePurpose"]),
        kind=kind,
        unit=schedule["chargingRateUnit"],
        periods=tuple(
            Period(int(p["startPeriod"]), float(p["limit"]), p.get("numberPhases"))
            for p in sorted(schedule["chargingSchedulePeriod"], key=lambda p: p["startPeriod"])
        ),
        recurrency=profile.get("recurrencyKind"),
        valid_from=_when(profile.get("validFrom")),
        valid_to=_when(profile.get("validTo")),
        start=_when(start) or (received if kind == "Absolute" else None),
        duration_s=schedule.get("duration"),
        transaction_id=None if profile.get("transactionId") is None else str(profile["transactionId"]),
        raw=profile,
    )


def to_w(period: Period, unit: str, voltage_v: float, phases: int) -> float:
    if unit == "W":
        return period.limit
    return period.limit * voltage_v * (period.phases or phases)


def limit_w(profiles: list[Profile], purpose: str, now: datetime, tx_start: datetime | None, voltage_v: float,
            phases: int, transaction_id: str | None = None) -> float | None:  # fmt: skip
    """The limit in W of the highest-stacked profile of this purpose in effect now; None when none is."""
    candidates = [
        p for p in profiles
        if p.purpose == purpose and (purpose != TX or p.transaction_id in (None, transaction_id))
    ]  # fmt: skip
    for profile in sorted(candidates, key=lambda p: -p.stack_level):
        period = profile.limit_at(now, tx_start)
        if period is not None:
            return to_w(period, profile.unit, voltage_v, phases)
    return None


def evse_limit_w(evse_profiles: list[Profile], charger_profiles: list[Profile], now: datetime,
                 tx_start: datetime | None, transaction_id: str | None, voltage_v: float,
                 phases: int) -> float | None:  # fmt: skip
    """What one EVSE may draw from its own and the charger-wide (connector/EVSE 0) profiles, before the max."""
    limit = None
    if tx_start is not None:
        limit = limit_w(evse_profiles, TX, now, tx_start, voltage_v, phases, transaction_id)
    if limit is None:
        # An EVSE's own default beats the charger-wide one.
        limit = limit_w(evse_profiles, TX_DEFAULT, now, tx_start, voltage_v, phases)
        if limit is None:
            limit = limit_w(charger_profiles, TX_DEFAULT, now, tx_start, voltage_v, phases)
    return limit


def cap(limit: float | None, ceiling: float | None) -> float | None:
    if ceiling is None:
        return limit
    return ceiling if limit is None else min(limit, ceiling)


def limit_at(evse_profiles: list[Profile], charger_profiles: list[Profile], now: datetime, tx_start: datetime | None,
             transaction_id: str | None, voltage_v: float, phases: int, max_w: float, evse: int) -> float:  # fmt: skip
    """What EVSE `evse` may draw at `now` in W (0: the charger as a whole, under its maximum profile)."""
    ceiling = cap(limit_w(charger_profiles, MAX, now, None, voltage_v, phases), max_w)
    if evse == 0:
        return ceiling  # type: ignore[return-value]
    limit = evse_limit_w(evse_profiles, charger_profiles, now, tx_start, transaction_id, voltage_v, phases)
    return cap(limit, ceiling)  # type: ignore[return-value]


def composite(evse_profiles: list[Profile], charger_profiles: list[Profile], start: datetime, duration_s: int,
              tx_start: datetime | None, transaction_id: str | None, voltage_v: float, phases: int, max_w: float,
              evse: int) -> list[tuple[int, float]]:  # fmt: skip
    """The composite schedule from `start` on: (seconds from start, limit in W) each time the limit changes."""
    end = start + timedelta(seconds=duration_s)
    moments = {start}
    for profile in charger_profiles + (evse_profiles if evse else []):
        moments |= profile.changes(start, end, tx_start)
    periods: list[tuple[int, float]] = []
    for moment in sorted(moments):
        watts = limit_at(evse_profiles, charger_profiles, moment, tx_start, transaction_id, voltage_v, phases, max_w,
                         evse)  # fmt: skip
        offset = int((moment - start).total_seconds())
        if periods and periods[-1][0] == offset:
            periods[-1] = (offset, watts)  # two changes within a second: the later one holds
        elif not periods or periods[-1][1] != watts:
            periods.append((offset, watts))
    return periods


def in_unit(watts: float, unit: str, voltage_v: float, phases: int) -> float:
    """A limit in W as the unit asked for (A per phase), rounded down to a tenth as schedules are written."""
    value = watts / (voltage_v * phases) if unit == "A" else watts
    return math.floor(value * 10 + 1e-9) / 10


def _when(text: str | None) -> datetime | None:
    return parse_iso(text) if text else None

