"""The alarm engine: ISA-18.2 alarm states with OPC UA Part 9 names, pure (no clock, no I/O).

One alarm is a :class:`Definition` applied to one point: ``chargers/*/online`` is a template that makes one alarm
per charger (``charger-offline:CP01``: the definition's id and what each ``*`` matched, joined by ``:``).

:func:`step` is the whole machine for one alarm: ``step(alarm, input, now) -> (alarm, transitions, next_wake)``,
where the input is a value :class:`Sample`, a :class:`Tick` of the clock, a :class:`Masked` change or an operator's
:class:`Act`; ``now`` is a time in seconds that the caller reads (the engine never does). Two layers:

- the condition layer, per limit (high_high, high, low, low_low) or state condition: set at ``x >= limit``, cleared
  at ``x < limit - deadband`` (the mirror image for low limits), then on-delay and off-delay -- a condition
  shorter than its on-delay never raises. The alarm's condition is the most severe active one (exclusive limits).
- the annunciation layer (ISA-18.2): normal, active_unacknowledged, active_acknowledged, returned_unacknowledged;
  and, over them, suppressed (masked by another alarm), shelved (by an operator, until a time) and out_of_service
  (by an admin). Those three still evaluate -- what happens meanwhile is journaled, never annunciated -- and when
  they end an alarm whose condition holds is annunciated again (unacknowledged), else it is normal.

:class:`Board` holds every alarm of a site: it routes samples to the alarms of their point (making an alarm when a
template's point first appears), passes masks from maskers to the alarms they mask, keeps the wake-up times and
the counters per level and state (updated as alarms change, always equal to :func:`recount`).
"""

from __future__ import annotations

import enum
import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

MAX_LEVEL = 30
LIMITS = ("high_high", "high", "low", "low_low")  # the analog conditions, most severe of each side first
HIGH = frozenset({"high_high", "high"})
STATE = "state"  # a discrete condition: a value among some (status Faulted, online false) or a bad quality


def severity(level: int) -> int:
    """OPC UA Severity (1-1000) of a level (1-30): linear, level 30 is 1000."""
    return max(1, min(1000, round(level * 1000 / MAX_LEVEL)))


class State(enum.StrEnum):
    normal = "normal"
    active_unacknowledged = "active_unacknowledged"
    active_acknowledged = "active_acknowledged"
    returned_unacknowledged = "returned_unacknowledged"
    suppressed = "suppressed"
    shelved = "shelved"
    out_of_service = "out_of_service"


SILENT = frozenset({State.suppressed, State.shelved, State.out_of_service})  # evaluated, never annunciated


class Refused(Exception):
    """An operator action the alarm's state does not allow (acknowledging a normal alarm, ...)."""


# -- definitions --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    kind: str  # high_high, high, low, low_low or state
    level: int
    limit: float | None = None  # analog
    deadband: float = 0.0  # analog: hysteresis
    values: tuple[Any, ...] = ()  # state: the abnormal values
    bad_quality: bool = False  # state: a bad quality is abnormal
    on_delay_s: float = 0.0
    off_delay_s: float = 0.0

    def raw(self, was_on: bool, value: Any, bad: bool) -> bool | None:
        """Whether the condition holds for this sample; None when the sample says nothing (hold)."""
        if self.kind == STATE:
            if bad:
                return True if self.bad_quality else None
            return any(_same(value, v) for v in self.values)
        if bad or isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            return None
        assert self.limit is not None
        if self.kind in ("high", "high_high"):
            return value >= (self.limit - self.deadband if was_on else self.limit)
        return value <= (self.limit + self.deadband if was_on else self.limit)


def _same(a: Any, b: Any) -> bool:
    # online = false must not match a 0, nor 1 a true: points are typed
    return a == b and isinstance(a, bool) == isinstance(b, bool)


@dataclass(frozen=True, slots=True)
class Definition:
    id: str
    point: str  # a point name, or a template whose segments may be *
    conditions: tuple[Condition, ...]
    message: str = ""  # {1}, {2}...: what the *s matched; {value}, {point}, {condition}, {limit}, context leaves
    masked_by: tuple[str, ...] = ()  # alarm ids, with {1}... from this alarm's *s: masked while one is on
    exclude: tuple[str, ...] = ()  # points (or templates) the template does not apply to
    context: tuple[str, ...] = ()  # points beside the input (leaf names) shown with the alarm when it rises
    source: str = "config"  # builtin or config
    description: str = ""

    def match(self, point: str) -> tuple[str, ...] | None:
        """What the *s matched when the point is one of this definition's, else None."""
        captures = match(self.point, point)
        if captures is None or any(match(pattern, point) is not None for pattern in self.exclude):
            return None
        return captures

    def alarm_id(self, captures: tuple[str, ...]) -> str:
        return ":".join((self.id, *captures))

    def maskers(self, captures: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(fill(template, captures) for template in self.masked_by)

    @property
    def top_level(self) -> int:
        return max(c.level for c in self.conditions)


def match(pattern: str, point: str) -> tuple[str, ...] | None:
    """chargers/*/evse/*/status against chargers/CP01/evse/2/status -> ("CP01", "2"); None when it does not fit."""
    parts, names = pattern.split("/"), point.split("/")
    if len(parts) != len(names):
        return None
    captures = []
    for part, name in zip(parts, names, strict=True):
        if part == "*":
            captures.append(name)
        elif part != name:
            return None
    return tuple(captures)


def fill(template: str, captures: tuple[str, ...]) -> str:
    """charger-offline:{1} with ("CP01", "2") -> charger-offline:CP01."""
    for n, value in enumerate(captures, 1):
        template = template.replace(f"{{{n}}}", value)
    return template


# -- one alarm ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timer:
    """One condition's layer: whether it holds (raw), whether it is active, and since when a delay runs."""

    on: bool = False
    active: bool = False
    since: float | None = None  # on-delay start (on, not active) or off-delay start (active, not on)


@dataclass(frozen=True, slots=True)
class Sample:
    value: Any
    bad: bool = False  # the value's quality is bad


@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class Masked:
    by: str  # the masker (an alarm id)
    on: bool


@dataclass(frozen=True, slots=True)
class Act:
    action: str  # acknowledge, shelve, unshelve, remove_from_service, return_to_service
    actor: str
    comment: str | None = None
    until: float | None = None  # shelve (required), remove_from_service (optional)


ACTIONS = ("acknowledge", "shelve", "unshelve", "remove_from_service", "return_to_service")
Input = Sample | Tick | Masked | Act


@dataclass(frozen=True, slots=True)
class Alarm:
    id: str
    definition: Definition
    point: str
    captures: tuple[str, ...] = ()
    timers: tuple[Timer, ...] = ()
    condition: str | None = None  # the active condition's kind; None: inactive
    level: int = 0  # the active condition's level (the last one's when inactive)
    acked: bool = True
    masks: frozenset[str] = frozenset()  # the maskers that are on
    shelved_until: float | None = None
    out_of_service: bool = False
    service_until: float | None = None  # out of service until (None: until returned by hand)
    by: str | None = None  # who shelved it or took it out of service
    value: Any = None
    bad: bool = False
    since: float | None = None  # when the alarm entered its state
    raised_at: float | None = None
    comment: str | None = None  # the last operator's comment

    @classmethod
    def new(cls, definition: Definition, point: str, captures: tuple[str, ...]) -> Alarm:
        return cls(definition.alarm_id(captures), definition, point, captures,
                   tuple(Timer() for _ in definition.conditions), level=definition.top_level)  # fmt: skip

    @property
    def state(self) -> State:
        if self.out_of_service:
            return State.out_of_service
        if self.shelved_until is not None:
            return State.shelved
        if self.masks:
            return State.suppressed
        if self.condition is not None:
            return State.active_acknowledged if self.acked else State.active_unacknowledged
        return State.normal if self.acked else State.returned_unacknowledged

    @property
    def holding(self) -> bool:
        """Whether its condition holds or is about to (on, or active): what masks the alarms it masks."""
        return self.condition is not None or any(t.on for t in self.timers)

    @property
    def wake(self) -> float | None:
        best = self.shelved_until
        if self.service_until is not None and (best is None or self.service_until < best):
            best = self.service_until
        for cond, timer in zip(self.definition.conditions, self.timers, strict=True):
            if timer.since is not None:
                at = timer.since + (cond.off_delay_s if timer.active else cond.on_delay_s)
                best = at if best is None or at < best else best
        return best


@dataclass(frozen=True, slots=True)
class Transition:
    alarm: str
    kind: str  # raised, changed, returned, acknowledged, suppressed, unsuppressed, shelved, unshelved,
    #            removed_from_service, returned_to_service
    before: State
    after: State
    at: float
    level: int
    condition: str | None
    value: Any
    actor: str | None = None
    comment: str | None = None

    @property
    def annunciated(self) -> bool:
        return self.after not in SILENT


def step(alarm: Alarm, inp: Input, now: float) -> tuple[Alarm, list[Transition], float | None]:
    """One input to one alarm: its new state, what happened (in order), and when it must be stepped again (a Tick)
    at the latest. Raises :class:`Refused` for an action its state does not allow; the alarm is then unchanged."""
    if type(inp) is Sample and not _due(alarm, now):
        timers = _timers(alarm, inp, now)
        if timers is alarm.timers:  # the usual case: a new value that changes nothing
            return alarm, [], alarm.wake
    out: list[Transition] = []
    a = alarm
    if isinstance(inp, Act):
        a = _act(a, inp, now, out)
    elif isinstance(inp, Masked):
        masks = a.masks | {inp.by} if inp.on else a.masks - {inp.by}
        a = _silence(a, replace(a, masks=masks), now, out, None, None)
    else:
        if isinstance(inp, Sample):
            a = replace(a, value=inp.value, bad=inp.bad)
        a = _expire(a, now, out)
    a = _evaluate(a, now, out, isinstance(inp, Sample))
    return a, out, a.wake


def _act(a: Alarm, act: Act, now: float, out: list[Transition]) -> Alarm:
    state = a.state
    if act.action == "acknowledge":
        if state not in (State.active_unacknowledged, State.returned_unacknowledged):
            raise Refused(f"nothing to acknowledge: the alarm is {state}")
        return _record(a, replace(a, acked=True, comment=act.comment, since=now), "acknowledged", now, out,
                       act.actor, act.comment)  # fmt: skip
    if act.action == "shelve":
        if a.out_of_service:
            raise Refused("the alarm is out of service")
        if act.until is None or act.until <= now:
            raise Refused("a shelf needs an end in the future")
        return _silence(a, replace(a, shelved_until=act.until, by=act.actor, comment=act.comment), now, out,
                        act.actor, act.comment, "shelved")  # fmt: skip
    if act.action == "unshelve":
        if a.shelved_until is None:
            raise Refused(f"the alarm is not shelved: it is {state}")
        return _silence(a, replace(a, shelved_until=None, by=None), now, out, act.actor, act.comment, "unshelved")
    if act.action == "remove_from_service":
        if a.out_of_service:
            raise Refused("the alarm is already out of service")
        if act.until is not None and act.until <= now:
            raise Refused("out of service until a time in the future")
        changed = replace(a, out_of_service=True, service_until=act.until, shelved_until=None, by=act.actor,
                          comment=act.comment)  # fmt: skip
        return _silence(a, changed, now, out, act.actor, act.comment, "removed_from_service")
    if act.action == "return_to_service":
        if not a.out_of_service:
            raise Refused(f"the alarm is in service: it is {state}")
        changed = replace(a, out_of_service=False, service_until=None, by=None, comment=act.comment)
        return _silence(a, changed, now, out, act.actor, act.comment, "returned_to_service")
    raise Refused(f"unknown action {act.action!r}: one of {', '.join(ACTIONS)}")


def _silence(before: Alarm, after: Alarm, now: float, out: list[Transition], actor: str | None,
             comment: str | None, kind: str | None = None) -> Alarm:  # fmt: skip
    """A change of the layers over the annunciation (masks, shelf, service): entering one acknowledges (nothing is
    annunciated there); leaving them all annunciates an alarm whose condition holds again."""
    was, now_state = before.state, after.state
    if now_state in SILENT:
        after = replace(after, acked=True)
    elif was in SILENT:
        after = replace(after, acked=after.condition is None, raised_at=now if after.condition else after.raised_at)
    now_state = after.state
    if kind is None:
        if was == now_state:
            return after
        kind = "suppressed" if now_state in SILENT else "unsuppressed"  # only masks change unasked
    return _record(before, replace(after, since=now), kind, now, out, actor, comment)


def _expire(a: Alarm, now: float, out: list[Transition]) -> Alarm:
    if a.shelved_until is not None and now >= a.shelved_until:
        a = _silence(a, replace(a, shelved_until=None, by=None), now, out, "system", "shelf expired", "unshelved")
    if a.service_until is not None and now >= a.service_until:
        a = _silence(a, replace(a, out_of_service=False, service_until=None, by=None), now, out, "system",
                     "out of service expired", "returned_to_service")  # fmt: skip
    return a


def _due(a: Alarm, now: float) -> bool:
    return (a.shelved_until is not None and now >= a.shelved_until) or (
        a.service_until is not None and now >= a.service_until)


def _timers(a: Alarm, sample: Sample | None, now: float) -> tuple[Timer, ...]:
    """The condition layer after a sample (or a tick: None); the very same tuple when nothing changed."""
    timers, changed = [], False
    for cond, timer in zip(a.definition.conditions, a.timers, strict=True):
        on = timer.on
        if sample is not None:
            raw = cond.raw(timer.on or timer.active, sample.value, sample.bad)
            on = timer.on if raw is None else raw
        new = _time(cond, timer, on, now)
        changed |= new is not timer
        timers.append(new)
    return tuple(timers) if changed else a.timers


def _evaluate(a: Alarm, now: float, out: list[Transition], sampled: bool) -> Alarm:
    """The condition layer, then what its change means for the annunciation. The alarm keeps the value it had
    when its condition layer last changed: the value at the time of its transitions."""
    timers = _timers(a, Sample(a.value, a.bad) if sampled else None, now)
    if timers is a.timers:
        return a
    current = _most_severe(a.definition.conditions, list(timers))
    a = replace(a, timers=timers)
    if current is None and a.condition is None:
        return a
    if current is not None and a.condition is not None and current.kind == a.condition:
        return a
    if current is None:
        return _process(a, replace(a, condition=None), "returned", now, out)
    if a.condition is None or (current.kind in HIGH) != (a.condition in HIGH) or current.level > a.level:
        return _process(a, replace(a, condition=current.kind, level=current.level), "raised", now, out)
    return _process(a, replace(a, condition=current.kind, level=current.level), "changed", now, out)


def _process(before: Alarm, after: Alarm, kind: str, now: float, out: list[Transition]) -> Alarm:
    """The condition changed: raised (or rose to a more severe limit) wants an acknowledgement, unless silenced."""
    if before.state in SILENT:
        after = replace(after, acked=True)
    elif kind == "raised":
        after = replace(after, acked=False, raised_at=now, comment=None)
    if after.state != before.state:
        after = replace(after, since=now)
    return _record(before, after, kind, now, out, None, None)


def _time(cond: Condition, timer: Timer, on: bool, now: float) -> Timer:
    """One condition's delays; the same Timer object when nothing changed."""
    if on and not timer.active:
        since = timer.since if timer.on and timer.since is not None else now
        if now - since >= cond.on_delay_s:
            return Timer(True, True, None)
        return timer if timer.on and timer.since == since else Timer(True, False, since)
    if not on and timer.active:
        since = timer.since if not timer.on and timer.since is not None else now
        if now - since >= cond.off_delay_s:
            return Timer(False, False, None)
        return timer if not timer.on and timer.since == since else Timer(False, True, since)
    return timer if timer.on == on and timer.since is None else Timer(on, timer.active, None)


def _most_severe(conditions: tuple[Condition, ...], timers: list[Timer]) -> Condition | None:
    active = [c for c, t in zip(conditions, timers, strict=True) if t.active]
    return max(active, key=lambda c: (c.level, -conditions.index(c))) if active else None


def _record(before: Alarm, after: Alarm, kind: str, now: float, out: list[Transition], actor: str | None,
            comment: str | None) -> Alarm:  # fmt: skip
    out.append(Transition(after.id, kind, before.state, after.state, now, after.level, after.condition, after.value,
                          actor, comment))  # fmt: skip
    return after


# -- ISA-18.2: what may follow what ------------------------------------------------------------------------------

_S = State
ALLOWED: dict[State, frozenset[State]] = {
    _S.normal: frozenset({_S.normal, _S.active_unacknowledged, *SILENT}),
    _S.active_unacknowledged: frozenset({_S.active_unacknowledged, _S.active_acknowledged,
                                         _S.returned_unacknowledged, *SILENT}),
    _S.active_acknowledged: frozenset({_S.active_acknowledged, _S.active_unacknowledged, _S.normal, *SILENT}),
    _S.returned_unacknowledged: frozenset({_S.returned_unacknowledged, _S.normal, _S.active_unacknowledged,
                                           *SILENT}),
    _S.suppressed: frozenset({_S.normal, _S.active_unacknowledged, *SILENT}),
    _S.shelved: frozenset({_S.normal, _S.active_unacknowledged, *SILENT}),
    _S.out_of_service: frozenset({_S.normal, _S.active_unacknowledged, *SILENT}),
}  # fmt: skip


# -- the site's alarms ------------------------------------------------------------------------------------------


def recount(alarms: Iterable[Alarm]) -> Counter[tuple[int, State]]:
    """Alarms by (level, state), counted afresh."""
    return Counter((a.level, a.state) for a in alarms)


@dataclass
class Board:
    """Every alarm of the site, the routes from points to alarms, masks, wake-ups and counters."""

    definitions: list[Definition]
    alarms: dict[str, Alarm] = field(default_factory=dict)
    counts: Counter[tuple[int, State]] = field(default_factory=Counter)
    changed: set[str] = field(default_factory=set)  # alarms whose state changed since the owner last looked
    _routes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # point -> its alarms (also none)
    _masked: dict[str, set[str]] = field(default_factory=dict)  # masker id -> the alarms it masks
    _wakes: list[tuple[float, str]] = field(default_factory=list)

    def restore(self, alarm: Alarm) -> None:
        """An alarm as it was saved: it exists (listed, counted) before its point shows up again."""
        self._put(alarm)
        for masker in alarm.definition.maskers(alarm.captures):
            self._masked.setdefault(masker, set()).add(alarm.id)

    def sample(self, point: str, value: Any, bad: bool, now: float) -> list[Transition]:
        out: list[Transition] = []
        ids = self._routes.get(point)
        if ids is None:
            ids = self._route(point, now, out)
        for alarm_id in ids:
            self._step(alarm_id, Sample(value, bad), now, out)
        return out

    def tick(self, now: float) -> list[Transition]:
        out: list[Transition] = []
        while self._wakes and self._wakes[0][0] <= now:
            _, alarm_id = heapq.heappop(self._wakes)
            alarm = self.alarms.get(alarm_id)
            if alarm is not None and alarm.wake is not None and alarm.wake <= now:
                self._step(alarm_id, Tick(), now, out)
        return out

    def act(self, alarm_id: str, act: Act, now: float) -> list[Transition]:
        if alarm_id not in self.alarms:
            raise KeyError(alarm_id)
        out: list[Transition] = []
        self._step(alarm_id, act, now, out)
        return out

    def next_wake(self) -> float | None:
        while self._wakes:
            at, alarm_id = self._wakes[0]
            alarm = self.alarms.get(alarm_id)
            if alarm is not None and alarm.wake == at:
                return at
            heapq.heappop(self._wakes)  # a wake-up that was moved or is past
        return None

    def _route(self, point: str, now: float, out: list[Transition]) -> tuple[str, ...]:
        ids = []
        for definition in self.definitions:
            captures = definition.match(point)
            if captures is None:
                continue
            alarm_id = definition.alarm_id(captures)
            ids.append(alarm_id)
            if alarm_id in self.alarms:  # restored
                continue
            alarm = Alarm.new(definition, point, captures)
            maskers = definition.maskers(captures)
            for masker in maskers:
                self._masked.setdefault(masker, set()).add(alarm.id)
            self._put(alarm)
            self.changed.add(alarm.id)
            for masker in maskers:  # made under a masker that holds: suppressed from the start, journaled
                if masker in self.alarms and self.alarms[masker].holding:
                    self._step(alarm.id, Masked(masker, True), now, out)
        self._routes[point] = tuple(ids)
        return self._routes[point]

    def _step(self, alarm_id: str, inp: Input, now: float, out: list[Transition]) -> None:
        before = self.alarms[alarm_id]
        after, transitions, wake = step(before, inp, now)
        if after is before:
            return
        self._put(after, before)
        if transitions:
            self.changed.add(alarm_id)
            out.extend(transitions)
        if wake is not None and wake != before.wake:
            heapq.heappush(self._wakes, (wake, alarm_id))
        if after.holding != before.holding:
            for masked in sorted(self._masked.get(alarm_id, ())):
                if masked in self.alarms:
                    self._step(masked, Masked(alarm_id, after.holding), now, out)

    def _put(self, alarm: Alarm, before: Alarm | None = None) -> None:
        if before is not None:
            key = (before.level, before.state)
            self.counts[key] -= 1
            if not self.counts[key]:
                del self.counts[key]
        elif alarm.wake is not None:
            heapq.heappush(self._wakes, (alarm.wake, alarm.id))
        self.counts[(alarm.level, alarm.state)] += 1
        self.alarms[alarm.id] = alarm
