"""The allocator: a pure function from a snapshot of the site to a limit per connector, and the reason for it.

No I/O, no clock: everything it weighs is in the snapshot, so every rule below is proved over thousands of
generated sites (tests/unit/test_allocation.py).

1. Headroom. What the EVs may take = site limit - (grid import - what the controlled EVs draw now); the same
   per phase where the site has phase limits and the meter phase values. In fail-safe the grid reading is not
   trusted: the EVs together get the fallback limit, whatever else the site does.
2. Admission. When the minimum of every car does not fit, cars are admitted in turn -- higher priority
   first; within a priority, those that would miss their departure first (least slack); then sessions whose
   minimum on-time is not over; then the rotation queue (newest last) -- and the others are paused (0 W).
   A car whose minimum off-time is not over waits.
   A charger that cannot be steered has its rating reserved before anyone is admitted.
3. Sharing. Above the minimums, power is shared by priority level (a lower level gets nothing more until the
   higher ones are satisfied), and within a level max-min fairly: every car rises at the same pace from the
   lowest, and stops only when it reaches its maximum, its demand (a car drawing less than its limit keeps a
   margin above its draw; the rest goes to the others) or a limit it is under: the site, a phase, a group on
   its path, its charger's rating. Nothing is left over while a car could take more.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

EPS = 1e-6  # W: what float arithmetic may leave over

SITE = "site"  # the constraint names: site, phase:1..3, group:<id>, charger:<id>


class Demand(NamedTuple):  # a tuple, not a dataclass: a cycle makes hundreds, and tuples are made fast
    """A connector with a car that wants power."""

    key: str  # "CP01/1"
    phases: tuple[int, ...] = (1, 2, 3)  # the site phases its car loads
    min_w: float = 4140.0  # the least it can be given when on (minimum current on its phases)
    max_w: float = 22000.0  # the most it may take (charger, car, manual or external cap: max_reason says)
    max_reason: str = "max"
    priority: int = 1
    groups: tuple[str, ...] = ()  # every limit on its path other than site and phases: group:row-a, charger:CP01
    draw_w: float | None = None  # measured now
    limit_w: float | None = None  # the limit in force now
    rank: int = 0  # place in the rotation queue: lower, earlier turn
    on: bool = False  # given power now
    locked: bool = False  # its minimum on (or off) time is not over: stays on (or off)
    laxity_s: float | None = None  # slack before its departure target; None: not known
    fixed: bool = False  # not steered: it takes max_w whatever is decided, and the others share around it


@dataclass(frozen=True)
class Snapshot:
    demands: tuple[Demand, ...]
    limit_w: float | None = None  # the site's total limit; None: no total limit
    phase_limit_w: tuple[float, float, float] | None = None  # per phase, where the site has them
    grid_w: float = 0.0  # measured import
    grid_phase_w: tuple[float, float, float] | None = None
    group_limit_w: dict[str, float] = field(default_factory=dict)  # "group:row-a" / "charger:CP01" -> W
    failsafe_w: float | None = None  # set: the grid reading is not trusted, the EVs together get this
    demand_margin_w: float = 1000.0
    urgency_s: float = 1800.0


class Allocation(NamedTuple):
    limit_w: float
    reason: str


def coefficients(d: Demand) -> dict[str, float]:
    """How much of each watt given to this car counts against each constraint (shared: do not change it)."""
    return _coefficients(d.phases, d.groups)


@functools.lru_cache(maxsize=1024)
def _coefficients(phases: tuple[int, ...], groups: tuple[str, ...]) -> dict[str, float]:
    coef = {SITE: 1.0}
    for p in phases:
        coef[f"phase:{p}"] = 1.0 / len(phases)
    for g in groups:
        coef[g] = 1.0
    return coef


def headroom(snap: Snapshot) -> dict[str, float]:
    """What the EVs may take, per constraint (site, phase:n, groups), before anything is given."""
    room: dict[str, float] = {}
    if snap.failsafe_w is not None:
        room[SITE] = snap.failsafe_w
    else:
        controlled = sum(d.draw_w or 0.0 for d in snap.demands)
        room[SITE] = math.inf if snap.limit_w is None else snap.limit_w - (snap.grid_w - controlled)
        if snap.phase_limit_w is not None and snap.grid_phase_w is not None:
            for p in (1, 2, 3):
                drawn = sum((d.draw_w or 0.0) / len(d.phases) for d in snap.demands if p in d.phases)
                room[f"phase:{p}"] = snap.phase_limit_w[p - 1] - (snap.grid_phase_w[p - 1] - drawn)
    room.update(snap.group_limit_w)
    return {name: max(0.0, value) for name, value in room.items()}


def urgent(d: Demand, snap: Snapshot) -> bool:
    return d.laxity_s is not None and d.laxity_s < snap.urgency_s


def level(d: Demand, snap: Snapshot) -> tuple[int, int]:
    """Sharing level: priority, then urgency within it. Higher levels are served first."""
    return (d.priority, 1 if urgent(d, snap) else 0)


def admission_order(snap: Snapshot) -> list[Demand]:
    return sorted(snap.demands, key=lambda d: (
        -d.priority,
        0 if urgent(d, snap) else 1,
        d.laxity_s if urgent(d, snap) else 0.0,
        0 if d.on and d.locked else 1,
        d.rank,
    ))  # fmt: skip


def capped(d: Demand, snap: Snapshot) -> tuple[float, str]:
    """The most this car can use now, and why: its maximum, or its demand when it draws less than its limit."""
    cap, why = d.max_w, d.max_reason
    if d.draw_w is not None and d.limit_w is not None and d.draw_w < d.limit_w - snap.demand_margin_w:
        demand = max(d.min_w, d.draw_w + snap.demand_margin_w)
        if demand < cap:
            cap, why = demand, "demand: the car takes less"
    return cap, why


def allocate(snap: Snapshot) -> dict[str, Allocation]:
    room = headroom(snap)
    coef = {d.key: coefficients(d) for d in snap.demands}
    caps = {d.key: capped(d, snap) for d in snap.demands}
    given: dict[str, float] = {}
    reasons: dict[str, str] = {}

    def fits(d: Demand, watts: float) -> str | None:
        """None when `watts` more for d fits every constraint on it; else the one that is short."""
        for name, c in coef[d.key].items():
            if name in room and watts * c > room[name] + EPS:
                return name
        return None

    # What cannot be steered takes its maximum first, fitting or not.
    for d in snap.demands:
        if d.fixed:
            given[d.key], reasons[d.key] = d.max_w, d.max_reason
            _take(room, coef[d.key], d.max_w)

    # Admission: minimums in turn.
    for d in admission_order(snap):
        cap = caps[d.key][0]
        if d.fixed:
            continue
        if d.locked and not d.on:
            reasons[d.key] = "paused: waiting its turn (minimum off time)"
        elif cap < d.min_w - EPS:
            reasons[d.key] = f"paused: its maximum is below the minimum current ({caps[d.key][1]})"
        elif (short := fits(d, d.min_w)) is not None:
            reasons[d.key] = f"paused: not enough for every minimum ({_name(short)})"
        else:
            given[d.key] = d.min_w
            _take(room, coef[d.key], d.min_w)

    # Sharing: level by level, max-min fair within a level.
    admitted = [d for d in snap.demands if d.key in given and not d.fixed]
    for lvl in sorted({level(d, snap) for d in admitted}, reverse=True):
        _fill([d for d in admitted if level(d, snap) == lvl], given, reasons, room, coef, caps)

    return {d.key: Allocation(round(given.get(d.key, 0.0), 3), reasons.get(d.key, "")) for d in snap.demands}


def _fill(demands: list[Demand], given: dict[str, float], reasons: dict[str, str], room: dict[str, float],
          coef: dict[str, dict[str, float]], caps: dict[str, tuple[float, str]]) -> None:  # fmt: skip
    """Progressive filling: the lowest rise together until each meets its cap or a tight constraint."""
    active = {d.key for d in demands}
    for key in list(active):
        if given[key] >= caps[key][0] - EPS:
            active.discard(key)
            reasons[key] = caps[key][1]
    while active:
        water = min(given[k] for k in active)
        rising = [k for k in active if given[k] <= water + EPS]
        waiting = [given[k] - water for k in active if given[k] > water + EPS]
        step = min(waiting, default=math.inf)
        step = min(step, min(caps[k][0] - given[k] for k in rising))
        pace: dict[str, float] = {}
        for k in rising:
            for name, c in coef[k].items():
                if name in room:
                    pace[name] = pace.get(name, 0.0) + c
        for name, rate in pace.items():
            if rate > 0:
                step = min(step, room[name] / rate)
        step = max(step, 0.0)
        for k in rising:
            given[k] += step
            _take(room, coef[k], step)
        for k in rising:
            if given[k] >= caps[k][0] - EPS:
                given[k] = min(given[k], caps[k][0])
                active.discard(k)
                reasons[k] = caps[k][1]
                continue
            tight = [name for name in coef[k] if name in room and room[name] <= EPS]
            if tight:
                active.discard(k)
                reasons[k] = f"fair share: {_name(tight[0])}"


def _take(room: dict[str, float], coef: dict[str, float], watts: float) -> None:
    for name, c in coef.items():
        if name in room:
            room[name] = max(0.0, room[name] - watts * c)


def _name(constraint: str) -> str:
    kind, _, which = constraint.partition(":")
    return {"site": "site limit", "phase": f"phase L{which} limit", "group": f"group {which} limit",
            "charger": f"charger {which} rating"}[kind]  # fmt: skip


# -- rotation ----------------------------------------------------------------------------------------------


class Turn(NamedTuple):
    """A contender's state for rotation: on or off, since when."""

    key: str
    priority: int
    on: bool
    since: float


def locked(turn: Turn, now: float, min_on_s: float, min_off_s: float) -> bool:
    """Its minimum on (or off) time is not over."""
    return now - turn.since < (min_on_s if turn.on else min_off_s)


def rotate(queue: Iterable[str], turns: Iterable[Turn], now: float, min_on_s: float,
           min_off_s: float) -> list[str]:  # fmt: skip
    """The next rotation queue. Newcomers join at the back. When, in a priority, cars wait off (their minimum
    off time over) while others have had power for their minimum on time, the one on longest goes to the back
    -- so over time every car of a priority gets its turn."""
    turns = {t.key: t for t in turns}
    order = [k for k in queue if k in turns] + sorted((k for k in turns if k not in queue),
                                                      key=lambda k: turns[k].since)  # fmt: skip
    for priority in {t.priority for t in turns.values()}:
        mine = [turns[k] for k in order if turns[k].priority == priority]
        waiting = any(not t.on and not locked(t, now, min_on_s, min_off_s) for t in mine)
        served = [t for t in mine if t.on and not locked(t, now, min_on_s, min_off_s)]
        if waiting and served:
            longest = min(served, key=lambda t: t.since)
            order.remove(longest.key)
            order.append(longest.key)
    return order


def with_turns(snap: Snapshot, queue: list[str], turns: dict[str, Turn], now: float, min_on_s: float,
               min_off_s: float) -> Snapshot:  # fmt: skip
    """The snapshot with each demand's rank, on and locked taken from the rotation state."""
    rank = {k: n for n, k in enumerate(queue)}
    return replace(snap, demands=tuple(
        d._replace(rank=rank.get(d.key, len(rank)), on=turns[d.key].on if d.key in turns else False,
                   locked=d.key in turns and locked(turns[d.key], now, min_on_s, min_off_s))
        for d in snap.demands
    ))  # fmt: skip


# -- baselines ---------------------------------------------------------------------------------------------


def baselines(ratings: dict[str, float], paths: dict[str, tuple[str, ...]], group_limit_w: dict[str, float],
              total_w: float) -> dict[str, float]:  # fmt: skip
    """What each charger may draw on its own, for good: its share of `total_w` (the fallback limit, else the
    site limit) in proportion to its rating, never above the rating, and scaled down until every group on its
    path holds. All chargers at their baseline together keep the site safe, even with no gateway to steer."""
    rated = sum(ratings.values())
    share = {c: min(r, total_w * r / rated) if rated > 0 else 0.0 for c, r in ratings.items()}
    for _ in range(len(group_limit_w) + 1):  # nested groups settle in as many passes as there are groups
        changed = False
        for group, limit in group_limit_w.items():
            members = [c for c in share if group in paths.get(c, ())]
            load = sum(share[c] for c in members)
            if load > limit + EPS:
                for c in members:
                    share[c] *= limit / load
                changed = True
        if not changed:
            break
    return {c: math.floor(w) for c, w in share.items()}
