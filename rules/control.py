"""The load cap's rules, without I/O: ``decide(state, reading, cfg, now, wall) -> (state, decision)``.

From one look at the site (the :class:`Reading` the shell takes of the process image) and what the chargers
were told (the :class:`State`), it decides the limits to send. No clock read, no socket: the shell in
rules/loadcap.py reads, sends and tells the outcome back (:func:`confirmed`, :func:`failed`). Its rules:

- Fail-safe: a site with a grid meter whose reading is stale shares only the fallback limit among the EVs.
- Rotation and sharing: rules/allocation.py (admission in turn, minimum on/off times, max-min fair shares).
- Control: a charger steered per EVSE gets a limit per EVSE; one steered with one limit for every EVSE gets the
  smallest of its EVSEs' shares; one steered as a whole gets their sum; one that cannot be steered has its
  rating reserved, and the others share around it.
- Draw: a draw measured before an EVSE's present limit had SETTLE_S to take effect says nothing of it: the EVSE
  counts at the limit it had when the grid was read (see :func:`_draw`). Times compared are the gateway's own
  (when it received each value), never a charger's clock.
- Launch reserve: a new session runs on the default profile (its minimum) until its first limit.
- Shaping: decreases go at once; increases step up by ramp_step_w at most every ramp_interval_s; a change under
  the dead band is not sent -- unless what would then be in force does not fit the headroom: then every
  decrease goes now.
- Renewal: a limit is sent again before half its validity has passed (it lapses to the baseline otherwise).
- Retries: a limit that was not taken is not sent again to that target before a backoff (2 s doubling to 30 s;
  60 s after a refusal), one request at a time per target.
- Ceiling: while its sessions are steered, a charger's own maximum is lifted from its baseline to its rating,
  renewed like a limit (not for a charger steered as a whole: its limit is that maximum).
- Forecast: for a session with a departure and an energy need, when it will have it at its present share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from rules.allocation import (
    EPS,
    SITE,
    Allocation,
    Demand,
    Snapshot,
    Turn,
    allocate,
    coefficients,
    headroom,
    rotate,
)

SETTLE_S = 5.0  # a car follows a new limit within this (IEC 61851-1); a draw measured sooner says nothing of it
RETRY_S, RETRY_MAX_S, REFUSED_RETRY_S = 2.0, 30.0, 60.0
NOT_STEERED = "not steered: its rating counts as load"


@dataclass(frozen=True, slots=True)
class Evse:
    """An EVSE with an open session, as the image shows it now."""

    key: str  # "CP01/1"
    charger: str
    evse: int
    phases: tuple[int, ...]  # the site phases its car loads
    charger_phases: int  # how many of its charger's phases the car draws on (a profile's numberPhases)
    min_w: float
    max_w: float
    max_reason: str
    priority: int = 1
    groups: tuple[str, ...] = ()
    draw_w: float | None = None  # measured; None when not known
    measured_at: datetime | None = None  # when the gateway received that draw
    departure: datetime | None = None  # when its EV says it leaves
    needed_wh: float | None = None  # the energy its EV needs in all, counted from the session's start
    so_far_wh: float | None = None  # the energy of the session so far
    ev_max_w: float | None = None  # the most its EV says it takes


@dataclass(frozen=True, slots=True)
class Charger:
    """What decides how a charger is steered."""

    control: str  # evse | each_evse | charger | none (drivers/ocpp/profiles.py)
    rating_w: float
    baseline_w: float  # its share of the fallback, held for good; its rating when that is no less
    phases: int


@dataclass(frozen=True, slots=True)
class Reading:
    """One look at the site."""

    evses: tuple[Evse, ...]
    chargers: Mapping[str, Charger]
    limit_w: float | None = None  # the strictest site limit; None: none
    phase_limit_w: tuple[float, float, float] | None = None
    grid_w: float | None = None  # None: no fresh reading (stale, or no grid meter)
    grid_phase_w: tuple[float, float, float] | None = None
    grid_at: datetime | None = None  # when the gateway received the grid reading
    metered: bool = False  # the site has a grid meter: a stale one means fail-safe
    fallback_w: float = 0.0
    group_limit_w: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Told:
    """What a target was told and accepted: ``at`` and ``increased_at`` on the loop's clock (renewals, ramps),
    ``changed`` on the gateway's wall clock (when its present limit was first sent: compared with when a draw or
    the grid was received)."""

    limit_w: float
    at: float
    increased_at: float
    changed: datetime
    before_w: float | None = None  # its limit before that change (None: it ran on the default profile)


@dataclass(frozen=True, slots=True)
class Limit:
    """A limit to send: on EVSE `evse` of `charger` (0: the charger as a whole), purpose dynamic or ceiling."""

    target: str  # "CP01/1", "CP01/0" (a charger steered as a whole), "CP01/ceiling"
    charger: str
    evse: int
    limit_w: float
    phases: int
    purpose: str = "dynamic"


@dataclass(frozen=True)
class State:
    told: Mapping[str, Told] = field(default_factory=dict)
    sending: Mapping[str, tuple[float, datetime]] = field(default_factory=dict)  # target -> (limit, since)
    retry: Mapping[str, tuple[int, float]] = field(default_factory=dict)  # target -> (failures, not before)
    turns: Mapping[str, Turn] = field(default_factory=dict)
    queue: tuple[str, ...] = ()
    failsafe: bool = False
    allocation: Mapping[str, Allocation] = field(default_factory=dict)


@dataclass(frozen=True)
class Forecast:
    completion: datetime | None  # None: it gets nothing now
    misses: bool


@dataclass(frozen=True)
class Decision:
    send: tuple[Limit, ...]
    allocation: dict[str, Allocation]
    snapshot: Snapshot
    targets: dict[str, float]  # the limit each target should have now (shaped)
    ended: tuple[str, ...]  # EVSEs whose session ended since the last decision
    forecasts: dict[str, Forecast]
    events: tuple[tuple[str, dict[str, Any]], ...] = ()


def target_of(evse: Evse, control: str) -> str:
    return evse.key if control == "evse" else f"{evse.charger}/0"


# -- deciding ------------------------------------------------------------------------------------------------


def decide(state: State, reading: Reading, cfg: Any, now: float, wall: datetime) -> tuple[State, Decision]:
    """cfg: the [loadcap] settings (LoadcapSettings); now: the loop's clock (s); wall: the gateway's UTC time."""
    events: list[tuple[str, dict[str, Any]]] = []
    failsafe = reading.metered and reading.grid_w is None
    if failsafe != state.failsafe:
        events.append(("failsafe", {"on": failsafe, "fallback_limit_w": reading.fallback_w}))
    members = _members(reading)
    steered = [e.key for target, evses in members.items() if not _fixed(target, reading) for e in evses]
    queue = rotate(state.queue, [state.turns[k] for k in steered if k in state.turns], now, cfg.min_on_s,
                   cfg.min_off_s)  # fmt: skip
    demands = _demands(state, reading, members, queue, cfg, now, wall)
    controlled = sum(d.draw_w or 0.0 for d in demands)
    margin = cfg.margin_w  # steer below the limit, not at it: the building moves between measurements
    snap = Snapshot(
        demands=tuple(demands),
        limit_w=None if reading.limit_w is None else max(0.0, reading.limit_w - margin),
        phase_limit_w=None if reading.phase_limit_w is None else tuple(max(0.0, w - margin / 3)
                                                                      for w in reading.phase_limit_w),
        grid_w=reading.grid_w if reading.grid_w is not None else controlled, grid_phase_w=reading.grid_phase_w,
        group_limit_w=dict(reading.group_limit_w), failsafe_w=reading.fallback_w if failsafe else None,
        demand_margin_w=cfg.demand_margin_w, urgency_s=cfg.urgency_s,
    )  # fmt: skip
    allocation = allocate(snap)
    turns = _turns(state.turns, allocation, snap, now)
    ended = tuple(k for k in state.allocation if k not in allocation and not k.endswith("/0"))
    goals, mins = _goals(allocation, members, reading)
    planned = _shape(state, goals, mins, snap, members, allocation, reading, cfg, now)
    gone = [k for k in state.told if k not in planned and not k.endswith("/ceiling")]
    told, sending, retry = (_without(m, gone) for m in (state.told, state.sending, state.retry))
    send, news = [], False
    renew = cfg.profile_validity_s / 2
    for target, limit_w in planned.items():
        was = told.get(target)
        on_its_way = sending.get(target)
        if (on_its_way or was) is None or abs((on_its_way[0] if on_its_way else was.limit_w) - limit_w) > EPS:
            news = True
        if on_its_way is not None or (target in retry and now < retry[target][1]):
            continue
        if was is None or abs(limit_w - was.limit_w) > EPS or now - was.at > renew:
            charger, _, evse = target.partition("/")
            send.append(Limit(target, charger, int(evse), limit_w, _phases(target, members, reading)))
    send += _ceilings(state, reading, planned, now, renew)
    if news:
        room = headroom(snap)[SITE]
        events.append(("allocation", {
            "headroom_w": None if room == math.inf else round(room, 1), "failsafe": failsafe,
            "limits": {k: {"target_w": a.limit_w, "sent_w": planned.get(k), "reason": a.reason}
                       for k, a in allocation.items()},
        }))  # fmt: skip
    new_state = replace(state, told=told, sending=sending, retry=retry, turns=turns, queue=tuple(queue),
                        failsafe=failsafe, allocation=allocation)  # fmt: skip
    forecasts = _forecasts(reading, allocation, wall)
    return new_state, Decision(tuple(send), allocation, snap, planned, ended, forecasts, tuple(events))


def _without(mapping: Mapping[str, Any], gone: list[str]) -> Mapping[str, Any]:
    """The mapping without those keys (itself when none of them is in it: most cycles drop nothing)."""
    if not any(k in mapping for k in gone):
        return mapping
    return {k: v for k, v in mapping.items() if k not in gone}


def _members(reading: Reading) -> dict[str, list[Evse]]:
    """The EVSEs behind each target: "CP01/1", or "CP01/0" for a charger steered as a whole or not at all."""
    members: dict[str, list[Evse]] = {}
    chargers = reading.chargers
    for e in reading.evses:
        target = e.key if chargers[e.charger].control == "evse" else f"{e.charger}/0"
        found = members.get(target)
        if found is None:
            members[target] = [e]
        else:
            found.append(e)
    return members


def _fixed(target: str, reading: Reading) -> bool:
    return target.endswith("/0") and reading.chargers[target[:-2]].control == "none"


def _demands(state: State, reading: Reading, members: dict[str, list[Evse]], queue: list[str], cfg: Any,
             now: float, wall: datetime) -> list[Demand]:  # fmt: skip
    """The allocator's demands, each with its place in the rotation (rank, on, and whether its minimum on or
    off time holds it)."""
    rank = {k: n for n, k in enumerate(queue)}
    last = len(rank)
    turns, min_on, min_off = state.turns, cfg.min_on_s, cfg.min_off_s
    grid_at = reading.grid_at
    demands = []
    for target, evses in members.items():
        charger = reading.chargers[evses[0].charger]
        if charger.control == "none":
            draws = [e.draw_w for e in evses if e.draw_w is not None]
            phases = tuple(sorted({p for e in evses for p in e.phases}))
            demands.append(Demand(key=target, phases=phases, min_w=charger.rating_w, max_w=charger.rating_w,
                                  max_reason=NOT_STEERED, priority=evses[0].priority, groups=evses[0].groups,
                                  draw_w=sum(draws) if draws else None, fixed=True))  # fmt: skip
            continue
        told = state.told.get(target)
        sending = state.sending.get(target)
        share = 1 if charger.control != "charger" else len(evses)  # its part of a limit for the whole charger
        for e in evses:
            draw, settled = _draw(e, told, sending, grid_at, share)
            turn = turns.get(e.key)
            on = turn is not None and turn.on
            demands.append(Demand(
                e.key, e.phases, e.min_w, e.max_w, e.max_reason, e.priority, e.groups, draw,
                told.limit_w / share if told is not None and settled else None, rank.get(e.key, last), on,
                turn is not None and now - turn.since < (min_on if on else min_off),
                _laxity(e, wall) if e.departure is not None else None,
            ))  # fmt: skip
    return demands


def _draw(e: Evse, told: Told | None, sending: tuple[float, datetime] | None, grid_at: datetime | None,
          share: int) -> tuple[float | None, bool]:  # fmt: skip
    """What the EVSE drew when the grid was read, as far as we can tell, and whether its draw was measured after
    its present limit had time to take effect (only then does a draw below the limit say the car takes less).

    The grid reading and the chargers' meter values are taken at different moments: a limit that changed in
    between makes the measured draw say nothing. Then the EVSE counts at the limit it had when the grid was
    read: should the car take less, the building is underestimated by exactly the power it leaves unused, and
    the site stays under; counting an old draw instead would take the cars' change for the building's -- a raise
    would look like a load step, a cut like room that is not there."""
    if e.draw_w is None:
        return None, False
    draw = max(0.0, e.draw_w)
    settled = True
    if told is not None:
        limit, before = told.limit_w / share, None if told.before_w is None else told.before_w / share
        settled = e.measured_at is not None and e.measured_at >= told.changed + timedelta(seconds=SETTLE_S)
        then = limit if grid_at is None or grid_at >= told.changed or before is None else before
        draw = min(draw, then) if settled else then
    if sending is not None and (grid_at is None or grid_at >= sending[1]):
        draw = min(draw, sending[0] / share)  # a cut on its way may already hold (the charger acts before it answers)
    return draw, settled


def _laxity(e: Evse, wall: datetime) -> float | None:
    if e.departure is None or e.needed_wh is None:
        return None
    return laxity_s(e.departure, wall, e.needed_wh, e.so_far_wh, min(e.max_w, e.ev_max_w) if e.ev_max_w else e.max_w)


def laxity_s(departure: datetime, now: datetime, needed_wh: float, so_far_wh: float | None,
             max_w: float) -> float | None:  # fmt: skip
    """Slack before departure: the time left minus the time the energy still needed takes at the car's
    maximum. Negative: it leaves short however it is served. None when it cannot take power at all."""
    if max_w <= 0:
        return None
    remaining_wh = max(0.0, needed_wh - (so_far_wh or 0.0))
    return (departure - now).total_seconds() - remaining_wh / max_w * 3600.0


def _turns(turns: Mapping[str, Turn], allocation: dict[str, Allocation], snap: Snapshot,
           now: float) -> dict[str, Turn]:  # fmt: skip
    """Who is on and who waits, since when: what rotation is judged by."""
    kept = {}
    priority = {d.key: d.priority for d in snap.demands if not d.fixed}
    for key, p in priority.items():
        on = allocation[key].limit_w > 0
        turn = turns.get(key)
        if turn is None or turn.on != on:
            # The minimum off time spares a car that was charging; one that never began may begin at once.
            turn = Turn(key, p, on, now if turn is not None or on else -math.inf)
        kept[key] = turn
    return kept


def _goals(allocation: dict[str, Allocation], members: dict[str, list[Evse]],
           reading: Reading) -> tuple[dict[str, float], dict[str, float]]:  # fmt: skip
    """The allocation per target, and what is in force there before anything was sent (the default profile:
    the minimum of each session)."""
    goals, mins = {}, {}
    for target, evses in members.items():
        control = reading.chargers[evses[0].charger].control
        if control == "none":
            continue
        shares = [allocation[e.key].limit_w for e in evses]
        if control == "charger":
            goals[target], mins[target] = sum(shares), sum(e.min_w for e in evses)
        elif control == "each_evse":
            goals[target], mins[target] = min(shares), min(e.min_w for e in evses)
        elif control == "evse":
            goals[target], mins[target] = shares[0], evses[0].min_w
    return goals, mins


def _shape(state: State, goals: dict[str, float], mins: dict[str, float], snap: Snapshot,
           members: dict[str, list[Evse]], allocation: dict[str, Allocation], reading: Reading, cfg: Any,
           now: float) -> dict[str, float]:  # fmt: skip
    """The limit each target should have now: decreases at once, increases in steps, nothing under the dead
    band; and if what would then be in force does not fit the headroom, every decrease at once."""
    planned: dict[str, float] = {}
    for target, goal in goals.items():
        told = state.told.get(target)
        in_force = told.limit_w if told else mins[target]  # a new session runs on the default profile
        if goal < in_force - EPS:
            planned[target] = goal if (in_force - goal > cfg.dead_band_w or told is None) else in_force
        elif goal > in_force + cfg.dead_band_w and (told is None or now - told.increased_at >= cfg.ramp_interval_s):
            # a car resumes at its minimum at least: below it, it would stay paused
            planned[target] = min(goal, max(in_force + cfg.ramp_step_w, mins[target]))
        else:
            planned[target] = in_force if told else goal
    # Below its share everywhere, the allocation's own check holds; only limits kept above it (an increase
    # not yet due, a cut under the dead band) can make the whole too much.
    above = any(v > goals[k] + EPS for k, v in planned.items())
    if above and not _fits(snap, _per_evse(planned, members, allocation, reading), cfg.margin_w):
        planned = {k: min(v, goals[k]) for k, v in planned.items()}
    return planned


def _per_evse(planned: dict[str, float], members: dict[str, list[Evse]], allocation: dict[str, Allocation],
              reading: Reading) -> dict[str, float]:  # fmt: skip
    """Target limits as what each EVSE may take: a charger's total split as the allocation splits it."""
    found = {}
    for target, limit in planned.items():
        evses = members[target]
        total = sum(allocation[e.key].limit_w for e in evses)
        whole = reading.chargers[evses[0].charger].control == "charger"
        for e in evses:
            share = (allocation[e.key].limit_w / total if total > EPS else 1 / len(evses)) if whole else 1.0
            found[e.key] = limit * share
    return found


def _fits(snap: Snapshot, planned: dict[str, float], margin_w: float) -> bool:
    """Whether the limits would keep the site under its real limit: the margin the allocator keeps is room for
    the building's noise, not a reason to cut everyone by a few watts at every reading."""
    room = headroom(snap)
    by_weights: dict[int, tuple[dict[str, float], float]] = {}  # cars share a handful of weight tables
    for d in snap.demands:
        weights = coefficients(d)
        given = d.max_w if d.fixed else planned.get(d.key, 0.0)
        entry = by_weights.get(id(weights))
        by_weights[id(weights)] = (weights, given + (entry[1] if entry else 0.0))
    load: dict[str, float] = {}
    for weights, given in by_weights.values():
        for name, c in weights.items():
            load[name] = load.get(name, 0.0) + given * c

    def slack(name: str) -> float:
        if snap.failsafe_w is not None:
            return 0.0
        return margin_w if name == SITE else margin_w / 3 if name.startswith("phase:") else 0.0

    return all(load.get(name, 0.0) <= value + slack(name) + EPS for name, value in room.items())


def _phases(target: str, members: dict[str, list[Evse]], reading: Reading) -> int:
    """numberPhases of a target's profile: what its car draws on; a charger's whole: all its phases."""
    evses = members[target]
    if len(evses) == 1 and target == evses[0].key:
        return evses[0].charger_phases
    return reading.chargers[evses[0].charger].phases


def _ceilings(state: State, reading: Reading, planned: dict[str, float], now: float, renew: float) -> list[Limit]:
    """While its sessions are steered, a charger's maximum is its rating, not its baseline; renewed before it
    lapses, so that the baseline is back soon after the gateway is gone."""
    found = []
    for charger_id in {t.partition("/")[0] for t in planned}:
        charger = reading.chargers[charger_id]
        target = f"{charger_id}/ceiling"
        told = state.told.get(target)
        if charger.control not in ("evse", "each_evse") or charger.baseline_w >= charger.rating_w:
            continue
        if target in state.sending or (target in state.retry and now < state.retry[target][1]):
            continue
        if told is None or now - told.at > renew:
            found.append(Limit(target, charger_id, 0, charger.rating_w, charger.phases, "ceiling"))
    return found


def _forecasts(reading: Reading, allocation: dict[str, Allocation], wall: datetime) -> dict[str, Forecast]:
    """When each session with a departure and an energy need will have it, at its present share."""
    found = {}
    for e in reading.evses:
        if e.departure is None or e.needed_wh is None or e.key not in allocation:
            continue
        remaining = max(0.0, e.needed_wh - (e.so_far_wh or 0.0))
        rate = allocation[e.key].limit_w
        if e.ev_max_w:
            rate = min(rate, e.ev_max_w)
        if remaining <= 0:
            found[e.key] = Forecast(wall, False)
        elif rate <= EPS:
            found[e.key] = Forecast(None, True)
        else:
            done = wall + timedelta(seconds=remaining / rate * 3600.0)
            found[e.key] = Forecast(done, done > e.departure)
    return found


# -- what became of a limit ----------------------------------------------------------------------------------


def sending(state: State, limit: Limit, wall: datetime) -> State:
    """A limit is on its way."""
    return replace(state, sending={**state.sending, limit.target: (limit.limit_w, wall)})


def confirmed(state: State, limit: Limit, now: float, wall: datetime) -> State:
    """The charger took the limit."""
    previous = state.told.get(limit.target)
    if previous is None or abs(limit.limit_w - previous.limit_w) > EPS:
        increase = previous is None or limit.limit_w > previous.limit_w + EPS
        told = Told(limit.limit_w, now, now if increase else previous.increased_at, wall,  # type: ignore[union-attr]
                    None if previous is None else previous.limit_w)
    else:  # renewed
        told = replace(previous, at=now)
    sending_ = {k: v for k, v in state.sending.items() if k != limit.target}
    retry = {k: v for k, v in state.retry.items() if k != limit.target}
    return replace(state, told={**state.told, limit.target: told}, sending=sending_, retry=retry)


def failed(state: State, limit: Limit, now: float, refused: bool = False, superseded: bool = False) -> State:
    """The limit was not taken: not sent again to that target before a backoff (none when a newer one took its
    place in the queue)."""
    sending_ = {k: v for k, v in state.sending.items() if k != limit.target}
    if superseded:
        return replace(state, sending=sending_)
    failures = state.retry.get(limit.target, (0, 0.0))[0] + 1
    wait = REFUSED_RETRY_S if refused else min(RETRY_S * 2 ** (failures - 1), RETRY_MAX_S)
    return replace(state, sending=sending_, retry={**state.retry, limit.target: (failures, now + wait)})


def forget(state: State, charger_id: str) -> State:
    """A charger that left, or registered again: what it was told no longer holds (a charger may forget its
    profiles when it reboots)."""
    prefix = f"{charger_id}/"

    def kept(mapping: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in mapping.items() if not k.startswith(prefix)}

    return replace(state, told=kept(state.told), sending=kept(state.sending), retry=kept(state.retry))
