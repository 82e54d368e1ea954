"""The load cap: the thin asyncio shell around its rules (rules/control.py) and the allocator.

It reads one :class:`~rules.control.Reading` of the process image, lets ``decide`` choose the limits, and sends
them through the command door -- one request at a time per target, each outcome told back to the rules. It
wakes on a grid measurement, on a session starting or stopping, a status, a charger's registration or way of
steering, a limit changing, and at least every ``tick_s``; a charger's own power update does not wake it (the
next grid reading reads every draw at once).

A charger that registers (its boot accepted, or its first word on a reconnect) is prepared before anything else
goes to it: its baseline (its share of ``site.fallback_limit_w``, for good: the site stays safe if the gateway
dies) and its default (the minimum current a starting session gets). Preparation is tried again, with a
doubling wait, until the baseline is taken; a charger that takes no maximum of its own gets its default,
scaled down to its share, for good instead. A charger that registers again (it rebooted: it may have forgotten
every profile) is prepared afresh.

What is set from outside -- external site limits (each source's, with an optional expiry after which it
lapses), operators' limits per EVSE and the mode -- is kept in the store and holds across restarts. The site
limit is the strictest of the configured one, the schedule's and every external source's.

It never imports a driver: it reads points and sends typed commands.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway.auth import Actor, Role
from gateway.clock import iso, parse_iso, utcnow
from gateway.commands import CommandError, Commands, SetChargingLimit, SetManualLimit, SetMode, SetSiteLimit
from gateway.model import Charger, Site
from gateway.points import ProcessImage, Quality, charger_point, evse_point
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.site_limits import ExternalLimit
from rules import control
from rules.allocation import baselines
from rules.control import Decision, Evse, Limit, Reading, State, decide
from rules.schedules import SCHEDULE_LIMIT

log = logging.getLogger(__name__)

# A charger's leaves that call for a new decision (a departure or energy need reorders who waits).
_WAKING = frozenset({"online", "registration", "control", "status", "transaction_id", "departure_time",
                     "energy_needed_wh", "external_limit_w"})  # fmt: skip
PREPARE_FIRST_S, PREPARE_MAX_S = 5.0, 300.0


@dataclass(frozen=True, slots=True)
class _Names:
    """The point names of one EVSE, made once (a cycle reads them all)."""

    transaction_id: str
    power_w: str
    currents: tuple[str, str, str]
    departure: str
    needed: str
    so_far: str
    ev_max: str
    external: str
    external_source: str

    @classmethod
    def of(cls, charger_id: str, evse: int) -> _Names:
        p = lambda leaf: evse_point(charger_id, evse, leaf)  # noqa: E731
        return cls(p("transaction_id"), p("power_w"), (p("current_a_l1"), p("current_a_l2"), p("current_a_l3")),
                   p("departure_time"), p("energy_needed_wh"), p("session_energy_wh"), p("ev_max_power_w"),
                   p("external_limit_w"), p("external_limit_source"))  # fmt: skip


class LoadCap:
    def __init__(self, settings: Settings, site: Site, image: ProcessImage, commands: Commands, store: Store,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.settings = settings
        self.cfg = settings.loadcap
        self.site = site
        self.image = image
        self.commands = commands
        self.store = store
        self.clock = clock
        self.mode = self.cfg.mode
        self.external: dict[str, ExternalLimit] = {}  # source -> limit
        self.manual: dict[str, float] = {}  # "CP01/1" -> limit W
        self.decided = State()  # what the rules decided so far, and what came of it
        self.decision: Decision | None = None
        self.actor = Actor("loadcap", Role.operator, "loadcap", automatic=True)
        self.registrations: dict[str, int] = {}  # charger -> the registration it is served for
        self.held: dict[str, float | None] = {}  # charger -> the baseline it took on that registration (W)
        self.controls: dict[str, str] = {}  # charger -> its way of steering, as last seen
        self._names: dict[tuple[str, int], _Names] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._preparing: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        paths = {c.id: self.path(c) for c in site.chargers.values()}
        ratings = {c.id: c.max_w for c in site.chargers.values()}
        safe = settings.site.fallback_limit_w if settings.site.fallback_limit_w is not None else site.limit_w
        everything = sum(ratings.values())
        self.baseline = baselines(ratings, paths, self.group_limits(), safe if safe is not None else everything)

    @property
    def active(self) -> bool:
        """Enabled, with a limit to keep: the site's, a schedule's or a group's (external limits come on top)."""
        return self.cfg.enabled and bool(self.site.limit_w is not None or self.settings.limit_schedule
                                         or self.group_limits())  # fmt: skip

    @property
    def prepared(self) -> set[str]:
        """Chargers that hold their baseline (or a default standing in for it) on their present registration."""
        return {c for c, w in self.held.items() if w is not None}

    def register(self, commands: Commands) -> None:
        commands.register(SetSiteLimit, self._set_site_limit)
        commands.register(SetMode, self._set_mode)
        commands.register(SetManualLimit, self._set_manual_limit)

    # -- what people see -----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        unprepared = sorted(c for c, w in self.held.items() if w is None)
        uncontrollable = sorted(c for c, way in self.controls.items() if way == "none")
        status = "failsafe" if self.decided.failsafe else "degraded" if unprepared or uncontrollable else "ok"
        return {"status": status, "mode": self.mode, "sessions": len(self.decided.allocation),
                "without_baseline": unprepared, "uncontrollable": uncontrollable}  # fmt: skip

    def state(self) -> dict[str, Any]:
        """The load cap as the API shows it: its limits with their sources, the allocation with reasons, the
        chargers it cannot steer or that hold no baseline, and when each session with a departure will be done."""
        evses = []
        told = self.decided.told
        forecasts = self.decision.forecasts if self.decision else {}
        for key, a in sorted(self.decided.allocation.items()):
            charger_id, evse = key.split("/")
            if evse == "0":
                continue  # a charger that is not steered: shown in `uncontrollable`
            sent = told.get(key) or told.get(f"{charger_id}/0")
            forecast = forecasts.get(key)
            evses.append({
                "charger_id": charger_id, "evse": int(evse), "target_w": round(a.limit_w, 1),
                "limit_w": sent.limit_w if sent else None, "reason": a.reason,
                "control": self.controls.get(charger_id, "evse"),
                "power_w": self.image.value(evse_point(charger_id, int(evse), "power_w")),
                "manual_limit_w": self.manual.get(key),
                "departure_time": self.image.value(evse_point(charger_id, int(evse), "departure_time")),
                "completion_time": iso(forecast.completion) if forecast and forecast.completion else None,
                "misses_departure": forecast.misses if forecast else None,
            })  # fmt: skip
        limit_w, _ = self.site_limit()
        return {
            "active": self.active, "mode": self.mode, "failsafe": self.decided.failsafe, "limit_w": limit_w,
            "sources": {"site": self.site.limit_w, "schedule": self.image.value(SCHEDULE_LIMIT), **self._external()},
            "fallback_limit_w": self.settings.site.fallback_limit_w, "baseline_w": self.baseline,
            "grid_power_w": self.image.value("site/grid_power_w"), "ev_power_w": self.image.value("site/ev_power_w"),
            "headroom_w": self.image.value("site/headroom_w"), "excess_w": self.image.value("site/excess_w"),
            "allocation": evses, "without_baseline": self.health()["without_baseline"],
            "uncontrollable": self.health()["uncontrollable"],
        }  # fmt: skip

    # -- the loop ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        kept = await self.store.site_limits.load()
        self.external, self.manual = kept.external, kept.manual
        self.mode = kept.mode or self.cfg.mode
        if kept.external or kept.manual or kept.mode:
            log.info("load cap resumes with mode=%s external=%s manual=%s", self.mode,
                     {s: e.limit_w for s, e in kept.external.items()}, kept.manual)  # fmt: skip
        feed = self.image.feed()
        try:
            while True:
                try:  # not wait_for: on Python 3.11 it can swallow the cancellation that stops the gateway
                    async with asyncio.timeout(self.cfg.tick_s):
                        changes = await feed.get()
                except TimeoutError:
                    changes = {}
                if changes and not any(self._wakes(name) for name in changes):
                    continue
                await self.cycle()
        finally:
            feed.close()
            for task in list(self._tasks):
                task.cancel()

    def _wakes(self, name: str) -> bool:
        if self.site.grid_meter and name.startswith(self._grid_prefix):
            return True
        return name == SCHEDULE_LIMIT or (name.startswith("chargers/") and name.rsplit("/", 1)[-1] in _WAKING)

    @property
    def _grid_prefix(self) -> str:
        return f"meters/{self.site.grid_meter}/"

    async def cycle(self) -> None:
        now, wall = self.clock(), utcnow()
        await self._lapse(wall)
        self._registrations()
        reading = self.read()
        self.decided, decision = decide(self.decided, reading, self.cfg, now, wall)
        self.decision = decision
        self._apply(decision, reading, wall)

    # -- what it reads -------------------------------------------------------------------------------------

    def read(self) -> Reading:
        """The site now, as the rules see it."""
        image, voltage, min_a = self.image, self.site.voltage_v, self.cfg.min_current_a
        evses, chargers = [], {}
        for charger_id in self.registrations:
            charger = self.site.chargers[charger_id]
            way = self.controls.get(charger_id, "evse")
            chargers[charger_id] = control.Charger(way, charger.max_w, self.baseline.get(charger_id, charger.max_w),
                                                   charger.phases)  # fmt: skip
            groups = self.path(charger)
            for evse in charger.evses:
                names = self._names.get((charger_id, evse))
                if names is None:
                    names = self._names[(charger_id, evse)] = _Names.of(charger_id, evse)
                if (image.value(names.transaction_id) or 0) <= 0:
                    continue
                used = self._phases_used(charger, names)
                manual = self.manual.get(f"{charger_id}/{evse}") if self.mode == "manual" else None
                max_w, max_reason = self._cap(charger, names, manual)
                power = image.get(names.power_w)
                draw = None if power is None or power.quality == Quality.bad or power.value is None \
                    else float(power.value)  # fmt: skip
                departure = image.value(names.departure)
                evses.append(Evse(
                    key=f"{charger_id}/{evse}", charger=charger_id, evse=evse, phases=_site_phases(charger, used),
                    charger_phases=len(used), min_w=min_a * voltage * len(used), max_w=max_w, max_reason=max_reason,
                    priority=charger.priority, groups=groups, draw_w=draw,
                    measured_at=power.received if power is not None else None,
                    departure=_time(departure) if departure else None, needed_wh=image.value(names.needed),
                    so_far_wh=image.value(names.so_far), ev_max_w=image.value(names.ev_max),
                ))  # fmt: skip
        limit_w, phase_limits = self.site_limit()
        grid = self._grid()
        fallback = self.settings.site.fallback_limit_w
        return Reading(
            evses=tuple(evses), chargers=chargers, limit_w=limit_w, phase_limit_w=phase_limits,
            grid_w=grid[0] if grid else None, grid_phase_w=grid[1] if grid else None,
            grid_at=grid[2] if grid else None, metered=bool(self.site.grid_meter),
            fallback_w=fallback or 0.0, group_limit_w=self.group_limits(),
        )  # fmt: skip

    def _cap(self, charger: Charger, names: _Names, manual_w: float | None) -> tuple[float, str]:
        """The most an EVSE may be given, and why: its charger's rating, a manual limit, or a limit an outside
        source put on the EVSE or the whole station (2.0.1 NotifyChargingLimit) -- the charger obeys that one
        whatever we send, so power shared out above it would stay unused."""
        caps = [(charger.max_w, "max: charger rating")]
        if manual_w is not None:
            caps.append((manual_w, "manual limit"))
        for name, source in ((names.external, names.external_source),
                             (charger_point(charger.id, "external_limit_w"),
                              charger_point(charger.id, "external_limit_source"))):  # fmt: skip
            limit = self.image.value(name)
            if isinstance(limit, (int, float)):
                caps.append((float(limit), f"external limit ({self.image.value(source) or 'outside source'})"))
        return min(caps, key=lambda cap: cap[0])

    def site_limit(self) -> tuple[float | None, tuple[float, float, float] | None]:
        """The strictest of the configured, scheduled and external limits (W), and the per-phase limits."""
        found = [w for w in (self.site.limit_w, self.image.value(SCHEDULE_LIMIT)) if w is not None]
        found += [e.limit_w for e in self.external.values()]
        per_phase = None
        if self.settings.site.limit_a is not None:
            per_phase = (self.settings.site.limit_a * self.site.voltage_v,) * 3
        return (min(found) if found else None), per_phase

    def group_limits(self) -> dict[str, float]:
        limits = {f"group:{g.id}": g.limit_w for g in self.site.groups.values() if g.limit_w is not None}
        limits.update({f"charger:{c.id}": c.max_w for c in self.site.chargers.values() if len(c.evses) > 1})
        return limits

    def path(self, charger: Charger) -> tuple[str, ...]:
        """Every limit above the charger: its groups and theirs, up to the top; its own rating."""
        found: list[str] = []
        for group in charger.groups:
            while group is not None and f"group:{group}" not in found:
                found.append(f"group:{group}")
                group = self.site.groups[group].parent if group in self.site.groups else None
        if len(charger.evses) > 1:
            found.append(f"charger:{charger.id}")
        return tuple(found)

    def _grid(self) -> tuple[float, tuple[float, float, float] | None, datetime] | None:
        """(import, per phase, when the gateway received it) from the grid meter; None when stale or none."""
        if not self.site.grid_meter:
            return None
        prefix = self._grid_prefix
        total = self.image.get(prefix + "power_w")
        if total is None or total.quality != Quality.good or total.value is None:
            return None
        parts = [self.image.get(f"{prefix}power_w_l{n}") for n in (1, 2, 3)]
        per_phase = None
        if all(p is not None and p.quality == Quality.good and p.value is not None for p in parts):
            per_phase = tuple(float(p.value) for p in parts)  # type: ignore[union-attr]
        return float(total.value), per_phase, total.received  # type: ignore[return-value]

    def _phases_used(self, charger: Charger, names: _Names) -> tuple[int, ...]:
        """The charger's phases the car draws on: those carrying current while it charges, else all it has."""
        if charger.phases == 1:
            return (1,)
        drawing = tuple(n for n, name in zip((1, 2, 3), names.currents, strict=True)
                        if (a := self.image.value(name)) is not None and a > 1.0)  # fmt: skip
        return drawing if drawing else (1, 2, 3)

    # -- chargers coming and going -------------------------------------------------------------------------

    def _registrations(self) -> None:
        """A charger that registered (again) is prepared afresh; one that left is forgotten."""
        for charger in self.site.chargers.values():
            registration = self.image.value(charger_point(charger.id, "registration")) or 0
            online = bool(self.image.value(charger_point(charger.id, "online")))
            served = self.registrations.get(charger.id)
            if online and registration and registration != served:
                self.decided = control.forget(self.decided, charger.id)
                self.registrations[charger.id] = registration
                self.held[charger.id] = None
                self._prepare(charger, registration)
            elif (not online or not registration) and served is not None:
                del self.registrations[charger.id]
                self.held.pop(charger.id, None)
                self.decided = control.forget(self.decided, charger.id)
                if (task := self._preparing.pop(charger.id, None)) is not None:
                    task.cancel()
            if charger.id in self.registrations:
                way = self.image.value(charger_point(charger.id, "control")) or "evse"
                if way != self.controls.get(charger.id, "evse"):
                    self._control_changed(charger.id, way)
                self.controls[charger.id] = way

    def _control_changed(self, charger_id: str, way: str) -> None:
        level = logging.WARNING if way == "none" else logging.INFO
        log.log(level, "charger steered another way charger=%s control=%s%s", charger_id, way,
                " (it refuses every charging profile: its rating is counted as load the gateway cannot steer)"
                if way == "none" else "")  # fmt: skip
        self._spawn(self.store.events.record("control", {"charger": charger_id, "control": way}))

    def _prepare(self, charger: Charger, registration: int) -> None:
        if (task := self._preparing.pop(charger.id, None)) is not None:
            task.cancel()

        async def prepare() -> None:
            wait = PREPARE_FIRST_S
            while not await self._baseline(charger):
                if self.registrations.get(charger.id) != registration:
                    return
                await asyncio.sleep(wait)
                wait = min(wait * 2, PREPARE_MAX_S)

        task = self._spawn(prepare())
        self._preparing[charger.id] = task
        task.add_done_callback(lambda t, cid=charger.id: self._preparing.get(cid) is t and self._preparing.pop(cid))

    async def _baseline(self, charger: Charger) -> bool:
        """Its baseline and its default; True once it holds a baseline (or a default standing in for one)."""
        voltage = self.site.voltage_v
        baseline_w = self.baseline.get(charger.id, charger.max_w)
        default_w = self.cfg.min_current_a * voltage * charger.phases
        held: float | None = baseline_w
        try:
            await self.commands.execute(SetChargingLimit(charger.id, 0, baseline_w, "baseline", charger.phases),
                                        self.actor)  # fmt: skip
        except CommandError as e:
            if e.code not in ("rejected", "unsupported"):
                log.info("charger did not take its baseline yet charger=%s: %s", charger.id, e.message)
                return False
            # It takes no maximum of its own: its default, scaled to its share, stands in for it, for good.
            default_w = min(default_w, baseline_w / len(charger.evses))
            held = default_w * len(charger.evses)
            log.warning("charger takes no maximum profile, its default stands in for its baseline charger=%s "
                        "default_w=%.0f: %s", charger.id, default_w, e.message)  # fmt: skip
        try:
            await self.commands.execute(SetChargingLimit(charger.id, 0, default_w, "default", charger.phases),
                                        self.actor)  # fmt: skip
        except CommandError as e:
            if held != baseline_w:  # nothing holds the charger should the gateway go
                log.warning("charger holds no baseline charger=%s: %s", charger.id, e.message)
                return False
            log.warning("charger did not take its default charger=%s: %s", charger.id, e.message)
        if charger.id in self.registrations:
            self.held[charger.id] = held
            self.image.set(charger_point(charger.id, "baseline_w"), held)
        return True

    # -- what it does --------------------------------------------------------------------------------------

    def _apply(self, decision: Decision, reading: Reading, wall: datetime) -> None:
        for key in decision.ended:  # its session is over: the next starts afresh
            charger_id, evse = key.split("/")
            self.image.update({evse_point(charger_id, int(evse), "limit_w"): None,
                               evse_point(charger_id, int(evse), "limit_reason"): ""})  # fmt: skip
        for limit in decision.send:
            if (running := self._inflight.get(limit.target)) is None or running.done():
                self._inflight[limit.target] = self._spawn(self._send(limit))
        self._publish(decision, reading)
        for kind, payload in decision.events:
            if kind == "failsafe":
                log.warning("fail-safe %s: grid meter %s; EVs held to %s W", "on" if payload["on"] else "off",
                            "stale" if payload["on"] else "back", payload["fallback_limit_w"])  # fmt: skip
            self._spawn(self.store.events.record(kind, payload, wall))

    async def _send(self, limit: Limit) -> None:
        wall = utcnow()
        self.decided = control.sending(self.decided, limit, wall)
        command = SetChargingLimit(limit.charger, limit.evse, limit.limit_w, limit.purpose, limit.phases,
                                   self.cfg.profile_validity_s)  # fmt: skip
        try:
            await self.commands.execute(command, self.actor)
        except CommandError as e:
            if e.code != "superseded":
                log.warning("limit not taken target=%s limit_w=%.0f: %s", limit.target, limit.limit_w, e.message)
            self.decided = control.failed(self.decided, limit, self.clock(), refused=e.code in ("rejected", "unsupported"),
                                        superseded=e.code == "superseded")  # fmt: skip
            return
        self.decided = control.confirmed(self.decided, limit, self.clock(), wall)
        if limit.purpose == "dynamic":
            charger_id, evse = limit.charger, limit.evse
            self.image.set(evse_point(charger_id, evse, "limit_w") if evse else charger_point(charger_id, "limit_w"),
                           limit.limit_w)  # fmt: skip

    def _publish(self, decision: Decision, reading: Reading) -> None:
        """What people see: measured values (the rules' own estimates of the draws stay inside them)."""
        limit_w = reading.limit_w
        grid = None if self.decided.failsafe or not self.site.grid_meter else decision.snapshot.grid_w
        ev_w = sum(e.draw_w or 0.0 for e in reading.evses)
        if self.decided.failsafe:
            room = reading.fallback_w
        else:
            room = math.inf if limit_w is None else max(0.0, limit_w - (decision.snapshot.grid_w - ev_w))
        values: dict[str, Any] = {
            "site/limit_w": limit_w, "site/mode": self.mode, "site/failsafe": self.decided.failsafe,
            "site/ev_power_w": round(ev_w, 1), "site/headroom_w": None if room == math.inf else round(room, 1),
            "site/excess_w": None if grid is None or limit_w is None else round(max(0.0, grid - limit_w), 1),
        }  # fmt: skip
        if self.site.grid_meter:
            values["site/grid_power_w"] = grid
        for key, a in decision.allocation.items():
            charger_id, _, evse = key.partition("/")
            if evse != "0":
                values[evse_point(charger_id, int(evse), "limit_reason")] = a.reason
        for key, forecast in decision.forecasts.items():
            charger_id, _, evse = key.partition("/")
            values[evse_point(charger_id, int(evse), "completion_time")] = \
                iso(forecast.completion) if forecast.completion else None  # fmt: skip
            values[evse_point(charger_id, int(evse), "misses_departure")] = forecast.misses
        self.image.update(values)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- limits from outside (commands it owns; each command checked its own values) ----------------------------

    def _must_be_active(self) -> None:
        if not self.active:
            raise CommandError("disabled", "the load cap is off: it needs loadcap.enabled and a site limit "
                               "(site.limit_w or limit_a, a limit_schedule or a group limit)")  # fmt: skip

    async def _lapse(self, wall: datetime) -> None:
        """External limits not renewed within their validity lapse back to the others (and say so)."""
        for source, limit in list(self.external.items()):
            if limit.expires_at is not None and limit.expires_at <= wall:
                del self.external[source]
                log.warning("external site limit lapsed source=%s limit_w=%.0f (not renewed before %s)", source,
                            limit.limit_w, iso(limit.expires_at))  # fmt: skip
                await self.store.site_limits.set_external(source, None, "lapsed")

    async def _set_site_limit(self, cmd: SetSiteLimit) -> dict[str, Any]:
        self._must_be_active()
        wall = utcnow()
        if cmd.limit_w is None:
            self.external.pop(cmd.source, None)
            await self.store.site_limits.set_external(cmd.source, None, "lifted")
        else:
            expires = wall + timedelta(seconds=cmd.valid_s) if cmd.valid_s is not None else None
            limit = ExternalLimit(cmd.limit_w, expires, wall)
            await self.store.site_limits.set_external(cmd.source, limit)
            self.external[cmd.source] = limit
        await self.cycle()
        return {"limit_w": self.site_limit()[0], **self._external()}

    def _external(self) -> dict[str, dict[str, Any]]:
        """Each source's external limit, and when it lapses (None: until lifted)."""
        return {"external": {source: e.limit_w for source, e in self.external.items()},
                "external_expires_at": {source: iso(e.expires_at) if e.expires_at else None
                                        for source, e in self.external.items()}}  # fmt: skip

    async def _set_mode(self, cmd: SetMode) -> dict[str, Any]:
        self._must_be_active()
        await self.store.site_limits.set_mode(cmd.mode, utcnow())
        self.mode = cmd.mode
        await self.cycle()
        return {"mode": self.mode}

    async def _set_manual_limit(self, cmd: SetManualLimit) -> dict[str, Any]:
        self._must_be_active()
        key = f"{cmd.charger_id}/{cmd.evse}"
        charger = self.site.chargers.get(cmd.charger_id)
        if charger is None or cmd.evse not in charger.evses:
            raise CommandError("unknown_target", f"no EVSE {key} on this site")
        await self.store.site_limits.set_manual(key, cmd.limit_w, utcnow())
        if cmd.limit_w is None:
            self.manual.pop(key, None)
        else:
            self.manual[key] = cmd.limit_w
        await self.cycle()
        return {"evse": key, "manual_limit_w": self.manual.get(key), "mode": self.mode}


def _site_phases(charger: Charger, used: tuple[int, ...]) -> tuple[int, ...]:
    """The charger's phases as the site's: its rotation says which site phase its L1, L2, L3 are."""
    rotation = [int(charger.phase_rotation[i * 2 + 1]) for i in range(3)]
    return tuple(sorted(rotation[p - 1] for p in used))


def _time(text: Any) -> datetime | None:
    try:
        return parse_iso(text)
    except (ValueError, TypeError, AttributeError):
        return None
