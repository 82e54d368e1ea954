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
    urgency = snap.urgency_s
    return sorted(snap.demands, key=lambda d: (
        -d.priority,
        *((0, d.laxity_s) if d.laxity_s is not None and d.laxity_s < urgency else (1, 0.0)),
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
    # Each car's weights on the constraints that are in force (cars share a handful of such dicts).
    in_force: dict[int, dict[str, float]] = {}
    coef = {}
    for d in snap.demands:
        full = _coefficients(d.phases, d.groups)
        mine = in_force.get(id(full))
        if mine is None:
            mine = in_force[id(full)] = {n: c for n, c in full.items() if n in room}
        coef[d.key] = mine
    caps = {d.key: capped(d, snap) for d in snap.demands}
    given: dict[str, float] = {}
    reasons: dict[str, str] = {}

    # What cannot be steered takes its maximum first, fitting or not.
    for d in snap.demands:
        if d.fixed:
            given[d.key], reasons[d.key] = d.max_w, d.max_reason
            _take(room, coef[d.key], d.max_w)

    # Admission: minimums in turn.
    for d in admission_order(snap):
        if d.fixed:
            continue
        cap = caps[d.key][0]
        if d.locked and not d.on:
            reasons[d.key] = "paused: waiting its turn (minimum off time)"
        elif cap < d.min_w - EPS:
            reasons[d.key] = f"paused: its maximum is below the minimum current ({caps[d.key][1]})"
        else:
            mine = coef[d.key]
            short = next((name for name, c in mine.items() if d.min_w * c > room[name] + EPS), None)
            if short is not None:
                reasons[d.key] = f"paused: not enough for every minimum ({_name(short)})"
            else:
                given[d.key] = d.min_w
                _take(room, mine, d.min_w)

    # Sharing: level by level, max-min fair within a level.
    levels: dict[tuple[int, int], list[Demand]] = {}
    for d in snap.demands:
        if d.key in given and not d.fixed:
            levels.setdefault(level(d, snap), []).append(d)
    for lvl in sorted(levels, reverse=True):
        _fill(levels[lvl], given, reasons, room, coef, caps)

    # To the milliwatt, never up: a limit rounded up could be a hair over what fits.
    return {d.key: Allocation(math.floor(given.get(d.key, 0.0) * 1000 + 1e-6) / 1000, reasons.get(d.key, ""))
            for d in snap.demands}  # fmt: skip


def _fill(demands: list[Demand], given: dict[str, float], reasons: dict[str, str], room: dict[str, float],
          coef: dict[str, dict[str, float]], caps: dict[str, tuple[float, str]]) -> None:  # fmt: skip
    """Progressive filling: the lowest rise together until each meets its cap or a tight constraint.

    Worked out by events, not in small steps: a round finds the water level at which the first constraint fills
    (sweeping the points where cars start rising -- their present share -- and stop -- their cap), lifts every
    rising car to it, and sets aside those that met their cap or a full constraint. A round per constraint that
    fills at most: O(n log n) each, whatever the number of cars. `coef`: only constraints in `room`."""
    active = []
    for d in demands:
        if given[d.key] >= caps[d.key][0] - EPS:
            reasons[d.key] = caps[d.key][1]
        else:
            active.append(d.key)
    while active:
        level = _water_level(active, given, room, coef, caps)
        lifts: dict[int, float] = {}  # per shared weights: the watts added (taken from the room at once)
        for k in active:
            lifted = min(level, caps[k][0])
            if lifted > given[k]:
                lifts[id(coef[k])] = lifts.get(id(coef[k]), 0.0) + lifted - given[k]
                given[k] = lifted
        weights = {id(coef[k]): coef[k] for k in active}
        for key, watts in lifts.items():
            _take(room, weights[key], watts)
        full = {name for name, left in room.items() if left <= EPS}
        still = []
        for k in active:
            cap, why = caps[k]
            if given[k] >= cap - EPS:
                given[k] = min(given[k], cap)
                reasons[k] = why
            elif full and (tight := next((name for name in coef[k] if name in full), None)) is not None:
                reasons[k] = f"fair share: {_name(tight)}"
            else:
                still.append(k)
        if len(still) == len(active):  # nothing moved: float dust; what is left is as good as full
            for k in still:
                reasons[k] = f"fair share: {_name(min(coef[k], key=room.__getitem__))}"
            return
        active = still


def _water_level(active: list[str], given: dict[str, float], room: dict[str, float],
                 coef: dict[str, dict[str, float]], caps: dict[str, tuple[float, str]]) -> float:  # fmt: skip
    """The level the rising cars reach before a constraint fills (inf: each reaches its cap first). A car at
    level w has max(given, min(w, cap)); a constraint's use grows piecewise linearly in w, with its slope changing
    only where one of its cars starts or stops rising."""
    events = sorted([(given[k], 1, k) for k in active] + [(caps[k][0], -1, k) for k in active])
    slope: dict[str, float] = {}
    used: dict[str, float] = {}  # at `at`
    at: dict[str, float] = {}
    best = math.inf
    for value, sign, k in events:
        if value >= best:
            break
        for name, c in coef[k].items():
            rate = slope.get(name, 0.0)
            if rate > 0:
                use = used[name] + rate * (value - at[name])
                if use > room[name]:
                    best = min(best, at[name] + (room[name] - used[name]) / rate)
                used[name] = use
            else:
                used.setdefault(name, 0.0)
            at[name] = value
            slope[name] = rate + sign * c
    for name, rate in slope.items():  # a constraint may fill after its last event
        if rate > EPS:
            best = min(best, at[name] + max(0.0, room[name] - used[name]) / rate)
    return best


def _take(room: dict[str, float], coef: dict[str, float], watts: float) -> None:
    for name, c in coef.items():
        if name in room:
            left = room[name] - watts * c
            room[name] = left if left > 0.0 else 0.0


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
