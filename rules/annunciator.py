"""The annunciator: the alarm engine's shell. It follows the process image into the engine, keeps what changes on
disk before anyone hears of it, and tells: the alarm list (API, MQTT, OPC UA), the outbox (MQTT ``alarms``), the
notifications (e-mail, webhook) and the counters (points).

One round: the points that changed (a coalescing feed) are sampled, the timers that are due ticked; the alarms that
changed, the journal of their transitions, their ``alarms`` messages and their notifications are committed in one
transaction; then the list and the counters are updated. An operator's action (through the command door) is a
round of its own and is answered once committed. At start the saved alarms come back as they were (an acknowledged
alarm is not raised again, an active one is not forgotten) and the whole process image is sampled.

Routing (``[[notify]]``): an alarm that rises to active_unacknowledged -- raised, or back from a mask, shelf or
maintenance with its condition holding -- is queued for each route whose level, sources (point patterns) and hours
(on-call windows, in the site's time zone) it matches; its return to normal only for routes that ask for it.
Silenced alarms (masked, shelved, out of service) are journaled and published, never notified.

It also publishes the points its built-in alarms watch and nobody else measures: the state directory's free disk
(``gateway/disk_free_mb``) and the days left to the site CA's and the servers' certificates
(``gateway/certificates/{name}/days_left``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography import x509

from gateway.alarms import AcknowledgeAlarm, AlarmList, SetAlarmInService, ShelveAlarm, UnshelveAlarm
from gateway.clock import iso
from gateway.commands import CommandError, Commands, acting
from gateway.points import Feed, Point, ProcessImage, Quality
from gateway.settings import NotifySettings, Settings
from gateway.store import Store
from gateway.store.alarms import Batch
from rules.alarm_definitions import definitions
from rules.alarms import SILENT, Act, Alarm, Board, Definition, Refused, State, Timer, Transition, severity
from rules.schedules import Window, parse_window

log = logging.getLogger(__name__)

HEALTH_EVERY_S = 60.0
MB = 1_000_000
RAISING = frozenset({"raised", "unsuppressed", "unshelved", "returned_to_service"})
COUNTED = {"active": (State.active_unacknowledged, State.active_acknowledged),
           "unacknowledged": (State.active_unacknowledged, State.returned_unacknowledged),
           "shelved": (State.shelved,), "suppressed": (State.suppressed,),
           "out_of_service": (State.out_of_service,)}  # fmt: skip
_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    """One [[notify]] entry: which alarms, when, to whom."""

    name: str
    settings: NotifySettings
    windows: tuple[Window, ...]

    def channels(self) -> list[str]:
        s = self.settings
        return (["email"] if s.email else []) + (["webhook"] if s.webhook else [])

    def takes(self, record: dict[str, Any], kind: str, at: datetime, tz: ZoneInfo) -> bool:
        s = self.settings
        if kind == "returned" and not s.return_to_normal:
            return False
        if record["level"] < s.min_level or not any(fnmatch.fnmatchcase(record["point"], p) for p in s.sources):
            return False
        local = at.astimezone(tz)
        return not self.windows or any(w.open_at(local) for w in self.windows)


class Annunciator:
    def __init__(self, settings: Settings, image: ProcessImage, store: Store, alarms: AlarmList,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.settings = settings
        self.image = image
        self.store = store
        self.alarms = alarms
        self.clock = clock
        self.definitions = definitions(settings)
        self.routes = [Route(f"notify[{n}]", s, tuple(parse_window(w) for w in s.hours))
                       for n, s in enumerate(settings.notify)]  # fmt: skip
        self.tz = ZoneInfo(settings.site.timezone)
        self.board = Board(self.definitions)
        self.rounds = 0
        self.transitions = 0
        self._lock = asyncio.Lock()
        self._woken = asyncio.Event()
        alarms.definitions = [describe(d) for d in self.definitions]

    def register(self, commands: Commands) -> None:
        for kind in (AcknowledgeAlarm, ShelveAlarm, UnshelveAlarm, SetAlarmInService):
            commands.register(kind, self.act)

    # -- running ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        feed = self.image.feed("")
        try:
            async with self._lock:
                self.board = Board(self.definitions)
                for alarm_id, name, point, data in await self.store.alarms.load():
                    alarm = load(self.definitions, alarm_id, name, point, data)
                    if alarm is not None:
                        self.board.restore(alarm)
                self.alarms.update(self.record(a) for a in self.board.alarms.values())
                self.alarms.ready.set()
            health = asyncio.create_task(self._publish_health(), name="alarm-health")
            try:
                await self._round(dict(self.image.items()) | feed.get_nowait())
                while True:
                    await self._round(await self._next(feed))
            finally:
                health.cancel()
                await asyncio.gather(health, return_exceptions=True)
        finally:
            feed.close()

    async def _next(self, feed: Feed) -> dict[str, Point]:
        """The points changed since the last round, once one has changed, a timer is due or an action moved the
        timers (then perhaps none)."""
        wake = self.board.next_wake()
        timeout = None if wake is None else max(0.0, wake - self.clock())
        self._woken.clear()
        changed = asyncio.ensure_future(feed.get())
        woken = asyncio.ensure_future(self._woken.wait())
        try:
            await asyncio.wait({changed, woken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not changed.done():
                changed.cancel()
        return changed.result() if changed.done() and not changed.cancelled() else {}

    async def _round(self, changes: dict[str, Point]) -> None:
        async with self._lock:
            now = self.clock()
            out: list[Transition] = []
            for name, point in changes.items():
                out += self.board.sample(name, point.value, point.quality == Quality.bad, now)
            out += self.board.tick(now)
            await self._settle(out, now)

    async def act(self, command: AcknowledgeAlarm | ShelveAlarm | UnshelveAlarm | SetAlarmInService) -> dict[str, Any]:
        """An operator's action, through the command door; answered once it is on disk."""
        actor = acting.get()
        who = str(actor) if actor is not None else "unknown"
        async with self._lock:
            now = self.clock()
            act = _act(command, who, now)
            try:
                out = self.board.act(command.alarm_id, act, now)
            except KeyError:
                raise CommandError("unknown_target", f"no alarm {command.alarm_id!r}") from None
            except Refused as e:
                raise CommandError("rejected", str(e)) from None
            await self._settle(out, now)
        self._woken.set()  # its timers may have moved (a shelf's end)
        return self.record(self.board.alarms[command.alarm_id])

    async def _settle(self, transitions: list[Transition], now: float) -> None:
        """Commit what changed, then tell."""
        self.rounds += 1
        changed, self.board.changed = self.board.changed, set()
        if not changed and not transitions:
            return
        at = datetime.fromtimestamp(now, UTC)
        records = {i: self.record(self.board.alarms[i]) for i in changed}
        batch = Batch()
        for alarm_id in sorted(changed):
            a = self.board.alarms[alarm_id]
            batch.states.append((a.id, a.definition.id, a.point, str(a.state), a.level, save(a)))
        for t in transitions:
            record = records.get(t.alarm) or self.record(self.board.alarms[t.alarm])
            batch.journal.append((at, t.alarm, t.kind, str(t.before), str(t.after), t.level, t.actor, t.comment,
                                  record))  # fmt: skip
            kind = _notified(t)
            if kind is not None:
                for route in self.routes:
                    if route.takes(record, kind, at, self.tz):
                        batch.notifications += [(at, route.name, channel, t.alarm, kind, record)
                                                for channel in route.channels()]  # fmt: skip
        await self.store.alarms.commit(batch)
        self.transitions += len(transitions)
        for t in transitions:
            level = logging.WARNING if t.kind == "raised" and t.annunciated else logging.INFO
            log.log(level, "alarm %s alarm=%s state=%s level=%d actor=%s", t.kind, t.alarm, t.after, t.level, t.actor)
        self.alarms.update(records.values())
        self._count()

    # -- what others see ----------------------------------------------------------------------------------

    def record(self, a: Alarm) -> dict[str, Any]:
        d = a.definition
        parent = a.point.rsplit("/", 1)[0]
        context = {leaf: self.image.value(f"{parent}/{leaf}") for leaf in d.context}
        limit = next((c.limit for c in d.conditions if c.kind == a.condition), None)
        fields = {str(n): v for n, v in enumerate(a.captures, 1)} | {k: v for k, v in context.items() if v != "NoError"}
        fields |= {"point": a.point, "value": _show(a.value), "condition": a.condition, "limit": _show(limit),
                   "level": a.level}  # fmt: skip
        message = " ".join(_FIELD.sub(lambda m: "" if fields.get(m[1]) is None else str(fields[m[1]]),
                                      d.message or f"{d.id} on {a.point}").split())  # fmt: skip
        state = a.state
        return {
            "id": a.id, "definition": d.id, "source": d.source, "point": a.point, "state": str(state),
            "active": a.condition is not None, "acknowledged": a.acked, "condition": a.condition, "level": a.level,
            "severity": severity(a.level), "message": message, "value": a.value,
            "quality": "bad" if a.bad else "good", "context": context, "since": _iso(a.since),
            "raised_at": _iso(a.raised_at), "shelved_until": _iso(a.shelved_until),
            "out_of_service_until": _iso(a.service_until), "by": a.by, "comment": a.comment,
            "masked_by": sorted(a.masks), "silenced": state in SILENT,
        }  # fmt: skip

    def _count(self) -> None:
        counts = self.board.counts
        totals: Counter[str] = Counter()
        levels: dict[int, Counter[str]] = {c.level: Counter() for d in self.definitions for c in d.conditions}
        for (level, state), n in counts.items():
            for name, states in COUNTED.items():
                if state in states:
                    totals[name] += n
                    levels.setdefault(level, Counter())[name] += n
        values: dict[str, Any] = {f"alarms/{name}": totals[name] for name in COUNTED}
        for level, by_state in levels.items():
            values |= {f"alarms/levels/{level}/{name}": by_state[name] for name in ("active", "unacknowledged")}
        self.image.update(values)

    def health(self) -> dict[str, Any]:
        states = Counter(a.state for a in self.board.alarms.values())
        return {"status": "ok", "definitions": len(self.definitions), "alarms": len(self.board.alarms),
                "rounds": self.rounds, "transitions": self.transitions,
                "states": {str(s): n for s, n in sorted(states.items())}}  # fmt: skip

    # -- points nobody else measures ----------------------------------------------------------------------

    async def _publish_health(self) -> None:
        while True:
            values: dict[str, Any] = {}
            try:
                free = await asyncio.to_thread(shutil.disk_usage, self.settings.gateway.state_dir)
                values["gateway/disk_free_mb"] = round(free.free / MB, 1)
            except OSError as e:
                log.warning("cannot read the free disk space: %s", e)
            for name, path in self._certificates().items():
                days = await asyncio.to_thread(_days_left, path, self.clock())
                if days is not None:
                    values[f"gateway/certificates/{name}/days_left"] = days
            self.image.update(values)
            await asyncio.sleep(HEALTH_EVERY_S)

    def _certificates(self) -> dict[str, Path]:
        s = self.settings
        pki = s.gateway.state_dir / "pki"
        found = {"site_ca": pki / "ca.pem", "ocpp_server": s.ocpp.tls_certificate or pki / "server.pem"}
        if s.opcua is not None:
            found["opcua_server"] = s.opcua.certificate or s.gateway.state_dir / "opcua" / "server-cert.der"
        return found


def _days_left(path: Path, now: float) -> float | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None  # not made (yet): TLS or OPC UA off
    try:
        cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError:  # being written (the OPC UA server's, at its first start), or damaged
        log.debug("certificate cannot be read path=%s", path)
        return None
    return round((cert.not_valid_after_utc.timestamp() - now) / 86400, 1)


def _notified(t: Transition) -> str | None:
    """What a transition tells the people on call: raised, returned, or nothing."""
    if t.after == State.active_unacknowledged and t.kind in RAISING:
        return "raised"
    if t.kind == "returned" and t.annunciated:
        return "returned"
    return None


def _act(command: Any, who: str, now: float) -> Act:
    if isinstance(command, AcknowledgeAlarm):
        return Act("acknowledge", who, command.comment)
    if isinstance(command, ShelveAlarm):
        return Act("shelve", who, command.comment, now + command.minutes * 60)
    if isinstance(command, UnshelveAlarm):
        return Act("unshelve", who, command.comment)
    if command.in_service:
        return Act("return_to_service", who, command.comment)
    until = now + command.minutes * 60 if command.minutes else None
    return Act("remove_from_service", who, command.comment, until)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso(datetime.fromtimestamp(ts, UTC))


def _show(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def describe(d: Definition) -> dict[str, Any]:
    """A definition as the API lists it."""
    conditions = []
    for c in d.conditions:
        entry: dict[str, Any] = {"kind": c.kind, "level": c.level, "severity": severity(c.level),
                                 "delay_s": c.on_delay_s, "off_delay_s": c.off_delay_s}  # fmt: skip
        if c.limit is not None:
            entry |= {"limit": c.limit, "deadband": c.deadband}
        else:
            entry |= {"equals": list(c.values), "bad_quality": c.bad_quality}
        conditions.append(entry)
    return {"id": d.id, "source": d.source, "point": d.point, "conditions": conditions, "message": d.message,
            "masked_by": list(d.masked_by), "exclude": list(d.exclude), "description": d.description}  # fmt: skip


# -- the engine's state on disk ---------------------------------------------------------------------------------


def save(a: Alarm) -> dict[str, Any]:
    return {"captures": list(a.captures), "timers": [[t.on, t.active, t.since] for t in a.timers],
            "condition": a.condition, "level": a.level, "acked": a.acked, "masks": sorted(a.masks),
            "shelved_until": a.shelved_until, "out_of_service": a.out_of_service, "service_until": a.service_until,
            "by": a.by, "value": a.value, "bad": a.bad, "since": a.since, "raised_at": a.raised_at,
            "comment": a.comment}  # fmt: skip


def load(found: list[Definition], alarm_id: str, name: str, point: str, data: dict[str, Any]) -> Alarm | None:
    """A saved alarm under its definition as configured now; None when that definition is gone or changed its
    point (its alarms start afresh)."""
    definition = next((d for d in found if d.id == name), None)
    captures = tuple(data.get("captures", ()))
    if definition is None or definition.match(point) != captures or definition.alarm_id(captures) != alarm_id:
        log.info("saved alarm dropped: its definition is gone or changed alarm=%s", alarm_id)
        return None
    timers = tuple(Timer(bool(on), bool(active), since) for on, active, since in data.get("timers", ()))
    if len(timers) != len(definition.conditions):
        timers = tuple(Timer() for _ in definition.conditions)
    condition = data.get("condition")
    if condition is not None and condition not in {c.kind for c in definition.conditions}:
        condition = None
    alarm = Alarm.new(definition, point, captures)
    return replace(alarm, timers=timers, condition=condition, level=int(data.get("level", alarm.level)),
                   acked=bool(data.get("acked", True)), masks=frozenset(data.get("masks", ())),
                   shelved_until=data.get("shelved_until"), out_of_service=bool(data.get("out_of_service")),
                   service_until=data.get("service_until"), by=data.get("by"), value=data.get("value"),
                   bad=bool(data.get("bad")), since=data.get("since"), raised_at=data.get("raised_at"),
                   comment=data.get("comment"))  # fmt: skip
