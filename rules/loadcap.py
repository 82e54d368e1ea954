"""The load cap: the control loop around the allocator.

At every grid measurement, every change of a charger's presence, status or session, and at least every
``tick_s``, it reads one snapshot of the process image, asks the allocator, shapes the answer and sends the
limits that changed through the command door:
- decreases go at once; increases step up by ``ramp_step_w`` at most every ``ramp_interval_s``; a change under
  the dead band is not sent -- unless what would be in force then does not fit the headroom, in which case
  every decrease goes now;
- a session that starts runs on the charger's default profile (the minimum current) until its first limit, and
  the allocator reserves that minimum before the next measurement (the launch reserve);
- a grid meter gone stale (its values bad) puts the site in fail-safe at once: the EVs together get
  ``site.fallback_limit_w``;
- a charger that connects gets its baseline (its share of the fallback, for good) and its default (the
  minimum current for a starting session) before anything else.
Modes: automatic, and manual where an operator's limit per EVSE is its maximum (the site limit still holds).
The site limit is the strictest of the configured one, the schedule's and every external source's.

It never imports a driver: it reads points and sends typed commands.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from gateway.auth import Actor, Role
from gateway.clock import parse_iso, utcnow
from gateway.commands import CommandError, Commands, SetChargingLimit, SetManualLimit, SetMode, SetSiteLimit
from gateway.model import Charger, Site
from gateway.points import ProcessImage, Quality, charger_point, evse_point
from gateway.settings import Settings
from gateway.store.events import Events
from rules.allocation import (
    EPS,
    SITE,
    Allocation,
    Demand,
    Snapshot,
    Turn,
    allocate,
    baselines,
    coefficients,
    headroom,
    rotate,
    with_turns,
)
from rules.schedules import SCHEDULE_LIMIT

log = logging.getLogger(__name__)

# charger leaves that call for a new allocation (a departure or energy need reorders who waits)
_WAKING = ("online", "status", "transaction_id", "power_w", "departure_time", "energy_needed_wh", "external_limit_w")


SETTLE_S = 5.0  # a car follows a new limit within this (IEC 61851-1); a draw measured sooner says nothing of it


@dataclass
class Sent:
    """What an EVSE was told, and when: ``at`` and ``increased_at`` on the loop's clock (for renewals and
    ramps), ``changed`` on the wall clock (when the charger took its present limit: to compare with when a
    draw or the grid was measured)."""

    limit_w: float
    at: float
    increased_at: float
    changed: datetime
    before_w: float | None = None  # its limit before that change (None: it ran on the default profile)


class LoadCap:
    def __init__(self, settings: Settings, site: Site, image: ProcessImage, commands: Commands, events: Events,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.settings = settings
        self.cfg = settings.loadcap
        self.site = site
        self.image = image
        self.commands = commands
        self.events = events
        self.clock = clock
        self.mode = self.cfg.mode
        self.external: dict[str, float] = {}  # source -> limit W
        self.manual: dict[str, float] = {}  # "CP01/1" -> limit W
        self.sent: dict[str, Sent] = {}
        self.allocation: dict[str, Allocation] = {}
        self.queue: list[str] = []
        self.turns: dict[str, Turn] = {}
        self.prepared: set[str] = set()  # chargers that got their baseline and default on this connection
        self.failsafe = False
        self.actor = Actor("loadcap", Role.operator, "loadcap", automatic=True)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self.sending: dict[str, tuple[float, datetime]] = {}  # limits on their way to the chargers, since when
        self.lifted: dict[str, float] = {}  # charger -> when its ceiling was last sent
        self._tasks: set[asyncio.Task[None]] = set()
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

    def health(self) -> dict[str, Any]:
        return {"status": "failsafe" if self.failsafe else "ok", "mode": self.mode, "sessions": len(self.allocation)}

    def state(self) -> dict[str, Any]:
        """The load cap as the API shows it: its limits with their sources, and the allocation with reasons."""
        evses = []
        for key, a in sorted(self.allocation.items()):
            charger_id, evse = key.split("/")
            sent = self.sent.get(key)
            evses.append({"charger_id": charger_id, "evse": int(evse), "target_w": round(a.limit_w, 1),
                          "limit_w": sent.limit_w if sent else None, "reason": a.reason,
                          "power_w": self.image.value(evse_point(charger_id, int(evse), "power_w")),
                          "manual_limit_w": self.manual.get(key)})  # fmt: skip
        return {
            "active": self.active, "mode": self.mode, "failsafe": self.failsafe,
            "limit_w": self.site_limit()[0],
            "sources": {"site": self.site.limit_w, "schedule": self.image.value(SCHEDULE_LIMIT),
                        "external": dict(self.external)},
            "fallback_limit_w": self.settings.site.fallback_limit_w, "baseline_w": self.baseline,
            "grid_power_w": self.image.value("site/grid_power_w"), "ev_power_w": self.image.value("site/ev_power_w"),
            "headroom_w": self.image.value("site/headroom_w"), "allocation": evses,
        }  # fmt: skip

    def register(self, commands: Commands) -> None:
        commands.register(SetSiteLimit, self._set_site_limit)
        commands.register(SetMode, self._set_mode)
        commands.register(SetManualLimit, self._set_manual_limit)

    # -- the loop ------------------------------------------------------------------------------------------

    async def run(self) -> None:
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
        if self.site.grid_meter and name.startswith(f"meters/{self.site.grid_meter}/"):
            return True
        return name == SCHEDULE_LIMIT or (name.startswith("chargers/") and name.rsplit("/", 1)[-1] in _WAKING)

    async def cycle(self) -> None:
        now = self.clock()
        self._connections()
        snap, phases = self.snapshot()
        self._failsafe(snap.failsafe_w is not None)
        self.queue = rotate(self.queue, [self.turns[k] for k in self.turns if k in phases], now, self.cfg.min_on_s,
                            self.cfg.min_off_s)  # fmt: skip
        snap = with_turns(snap, self.queue, self.turns, now, self.cfg.min_on_s, self.cfg.min_off_s)
        allocation = allocate(snap)
        self._turn(allocation, now)
        for ended in set(self.allocation) - set(allocation):  # its session is over: the next starts afresh
            self.sent.pop(ended, None)
            charger_id, evse = ended.split("/")
            self.image.update({evse_point(charger_id, int(evse), "limit_w"): None,
                               evse_point(charger_id, int(evse), "limit_reason"): ""})  # fmt: skip
        self.allocation = allocation
        limits = self.shape(snap, allocation, now)
        told = {k: s.limit_w for k, s in self.sent.items()} | {k: w for k, (w, _) in self.sending.items()}
        news = any(k not in told or abs(told[k] - v) > EPS for k, v in limits.items())  # renewals aside
        for key, limit_w in limits.items():
            self._send(key, limit_w, phases[key], now)
        for charger_id in {key.split("/")[0] for key in allocation}:
            self._lift(self.site.chargers[charger_id], now)
        self._publish(snap)
        if news:  # an allocation change the chargers are told of
            room = headroom(snap)["site"]
            self._spawn(self.events.record("allocation", {
                "headroom_w": None if room == float("inf") else round(room, 1), "failsafe": self.failsafe,
                "limits": {k: {"target_w": a.limit_w, "sent_w": limits.get(k), "reason": a.reason}
                           for k, a in allocation.items()},
            }))  # fmt: skip

    # -- what it reads -------------------------------------------------------------------------------------

    def snapshot(self) -> tuple[Snapshot, dict[str, int]]:
        """The site now, as the allocator sees it; and how many phases each session draws on."""
        voltage = self.site.voltage_v
        demands, phases = [], {}
        grid = self._grid()
        for charger in self.site.chargers.values():
            if charger.id not in self.prepared:
                continue
            for evse in charger.evses:
                key = f"{charger.id}/{evse}"
                if (self.image.value(evse_point(charger.id, evse, "transaction_id")) or 0) <= 0:
                    continue
                used = self._phases_used(charger, evse)
                phases[key] = len(used)
                manual = self.manual.get(key) if self.mode == "manual" else None
                sent = self.sent.get(key)
                draw, settled = self._draw(charger.id, evse, sent, grid[2] if grid else None)
                max_w, max_reason = self._cap(charger.id, evse, charger.max_w, manual)
                demands.append(Demand(
                    key=key, phases=_site_phases(charger, used), min_w=self.cfg.min_current_a * voltage * len(used),
                    max_w=max_w, max_reason=max_reason,
                    priority=charger.priority, groups=self.path(charger), draw_w=draw,
                    limit_w=sent.limit_w if sent and settled else None, laxity_s=self._laxity(charger.id, evse, max_w),
                ))  # fmt: skip
        controlled = sum(d.draw_w or 0.0 for d in demands)
        limit_w, phase_limits = self.site_limit()
        margin = self.cfg.margin_w  # steer below the limit, not at it: the building moves between measurements
        snap = Snapshot(
            demands=tuple(demands), limit_w=None if limit_w is None else max(0.0, limit_w - margin),
            phase_limit_w=None if phase_limits is None else tuple(max(0.0, w - margin / 3) for w in phase_limits),
            grid_w=grid[0] if grid else controlled, grid_phase_w=grid[1] if grid else None,
            group_limit_w=self.group_limits(),
            failsafe_w=(self.settings.site.fallback_limit_w or 0.0) if self.site.grid_meter and grid is None else None,
            demand_margin_w=self.cfg.demand_margin_w, urgency_s=self.cfg.urgency_s,
        )  # fmt: skip
        return snap, phases

    def _cap(self, charger_id: str, evse: int, rating_w: float, manual_w: float | None) -> tuple[float, str]:
        """The most an EVSE may be given, and why: its charger's rating, a manual limit, or a limit an outside
        source put on the EVSE or the whole station (2.0.1 NotifyChargingLimit) -- the charger obeys that one
        whatever we send, so power shared out above it would stay unused."""
        caps = [(rating_w, "max: charger rating")]
        if manual_w is not None:
            caps.append((manual_w, "manual limit"))
        for name in (evse_point(charger_id, evse, "external_limit_w"), charger_point(charger_id, "external_limit_w")):
            limit = self.image.value(name)
            if isinstance(limit, (int, float)):
                source = self.image.value(name.removesuffix("_w") + "_source") or "outside source"
                caps.append((float(limit), f"external limit ({source})"))
        return min(caps, key=lambda cap: cap[0])

    def _laxity(self, charger_id: str, evse: int, max_w: float) -> float | None:
        """The session's slack before its departure, from what its EV said it needs (None: it did not say)."""
        departure = self.image.value(evse_point(charger_id, evse, "departure_time"))
        needed = self.image.value(evse_point(charger_id, evse, "energy_needed_wh"))
        if not departure or needed is None:
            return None
        try:
            leaves = parse_iso(departure)
        except (ValueError, TypeError, AttributeError):
            return None
        ev_max = self.image.value(evse_point(charger_id, evse, "ev_max_power_w"))
        return laxity_s(leaves, utcnow(), needed, self.image.value(evse_point(charger_id, evse, "session_energy_wh")),
                        min(max_w, ev_max) if ev_max else max_w)  # fmt: skip

    def site_limit(self) -> tuple[float | None, tuple[float, float, float] | None]:
        """The strictest of the configured, scheduled and external limits (W), and the per-phase limits."""
        found = [w for w in (self.site.limit_w, self.image.value(SCHEDULE_LIMIT)) if w is not None]
        found += list(self.external.values())
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
        """(import, per phase, when measured) from the grid meter; None when it is stale or there is none."""
        if not self.site.grid_meter:
            return None
        total = self.image.get(f"meters/{self.site.grid_meter}/power_w")
        if total is None or total.quality != Quality.good or total.value is None:
            return None
        parts = [self.image.get(f"meters/{self.site.grid_meter}/power_w_l{n}") for n in (1, 2, 3)]
        per_phase = None
        if all(p is not None and p.quality == Quality.good and p.value is not None for p in parts):
            per_phase = tuple(float(p.value) for p in parts)  # type: ignore[union-attr]
        return float(total.value), per_phase, total.ts  # type: ignore[return-value]

    def _draw(self, charger_id: str, evse: int, sent: Sent | None = None,
              grid_at: datetime | None = None) -> tuple[float | None, bool]:  # fmt: skip
        """What the EVSE drew when the grid was read (at `grid_at`), as far as we can tell, and whether its draw
        was measured after its present limit had time to take effect (only then does a draw below the limit
        say the car takes less).

        The grid reading and the chargers' meter values are taken at different moments: a limit that changed
        in between makes the measured draw say nothing. Then the EVSE counts at the limit it had when the grid
        was read: should the car take less, the building is underestimated by exactly the power it leaves
        unused, and the site stays under; counting an old draw instead would take the cars' change for the
        building's -- a raise would look like a load step, a cut like room that is not there."""
        point = self.image.get(evse_point(charger_id, evse, "power_w"))
        if point is None or point.quality == Quality.bad or point.value is None:
            return None, False
        draw = max(0.0, float(point.value))
        settled = True
        if sent is not None:
            settled = point.ts >= sent.changed + timedelta(seconds=SETTLE_S)
            then = sent.limit_w if grid_at is None or grid_at >= sent.changed or sent.before_w is None \
                else sent.before_w  # fmt: skip
            draw = min(draw, then) if settled else then
        sending = self.sending.get(f"{charger_id}/{evse}")
        if sending is not None and (grid_at is None or grid_at >= sending[1]):
            draw = min(draw, sending[0])  # a cut on its way may already hold (the charger acts before it answers)
        return draw, settled

    def _phases_used(self, charger: Charger, evse: int) -> tuple[int, ...]:
        """The charger's phases the car draws on: those carrying current while it charges, else all it has."""
        if charger.phases == 1:
            return (1,)
        currents = [self.image.value(evse_point(charger.id, evse, f"current_a_l{n}")) for n in (1, 2, 3)]
        drawing = tuple(n for n, a in zip((1, 2, 3), currents, strict=True) if a is not None and a > 1.0)
        return drawing if drawing else (1, 2, 3)

    # -- what it decides -----------------------------------------------------------------------------------

    def shape(self, snap: Snapshot, allocation: dict[str, Allocation], now: float) -> dict[str, float]:
        """The limits to send now: decreases at once, increases in steps, nothing under the dead band; and if
        what would then be in force does not fit the headroom, every decrease at once."""
        planned: dict[str, float] = {}
        for d in snap.demands:
            target = allocation[d.key].limit_w
            sent = self.sent.get(d.key)
            in_force = sent.limit_w if sent else d.min_w  # a new session runs on the default profile
            if target < in_force - EPS:
                planned[d.key] = target if (in_force - target > self.cfg.dead_band_w or sent is None) else in_force
            elif target > in_force + self.cfg.dead_band_w and (
                sent is None or now - sent.increased_at >= self.cfg.ramp_interval_s
            ):
                planned[d.key] = min(target, max(in_force + self.cfg.ramp_step_w, d.min_w))  # a car resumes at
                # its minimum at least: below it, it would stay paused
            else:
                planned[d.key] = in_force if sent else target
        if not _fits(snap, planned, self.cfg.margin_w):
            planned = {k: min(v, allocation[k].limit_w) for k, v in planned.items()}
        renew = self.cfg.profile_validity_s / 2
        return {
            k: v for k, v in planned.items()
            if (sent := self.sent.get(k)) is None or abs(v - sent.limit_w) > EPS or now - sent.at > renew
        }  # fmt: skip

    def _turn(self, allocation: dict[str, Allocation], now: float) -> None:
        """Keep who is on and who waits, since when: what rotation is judged by."""
        for key in list(self.turns):
            if key not in allocation:
                del self.turns[key]
        for key, a in allocation.items():
            on = a.limit_w > 0
            turn = self.turns.get(key)
            if turn is None or turn.on != on:
                charger = self.site.chargers[key.split("/")[0]]
                # The minimum off time spares a car that was charging; one that never began may begin at once.
                since = now if turn is not None or on else -math.inf
                self.turns[key] = Turn(key, charger.priority, on, since)

    def _failsafe(self, on: bool) -> None:
        if on != self.failsafe:
            self.failsafe = on
            log.warning("fail-safe %s: grid meter %s; EVs held to %s W", "on" if on else "off",
                        "stale" if on else "back", self.settings.site.fallback_limit_w)  # fmt: skip
            fallback_w = self.settings.site.fallback_limit_w
            self._spawn(self.events.record("failsafe", {"on": on, "fallback_limit_w": fallback_w}))

    # -- what it does --------------------------------------------------------------------------------------

    def _connections(self) -> None:
        """A charger that came online gets its baseline and default first; one that left is forgotten."""
        for charger in self.site.chargers.values():
            online = bool(self.image.value(charger_point(charger.id, "online")))
            if online and charger.id not in self.prepared:
                self.prepared.add(charger.id)
                self._spawn(self._prepare(charger))
            elif not online and charger.id in self.prepared:
                self.prepared.discard(charger.id)
                self.lifted.pop(charger.id, None)
                for evse in charger.evses:
                    self.sent.pop(f"{charger.id}/{evse}", None)

    async def _prepare(self, charger: Charger) -> None:
        voltage = self.site.voltage_v
        baseline_w = self.baseline.get(charger.id, charger.max_w)
        limits = [SetChargingLimit(charger.id, 0, baseline_w, "baseline", charger.phases),
                  SetChargingLimit(charger.id, 0, self.cfg.min_current_a * voltage * charger.phases, "default",
                                   charger.phases)]  # fmt: skip
        for limit in limits:
            try:
                await self.commands.execute(limit, self.actor)
            except CommandError as e:
                log.warning("charger did not take its %s limit charger=%s: %s", limit.purpose, charger.id, e.message)

    def _send(self, key: str, limit_w: float, phases: int, now: float) -> None:
        if (running := self._inflight.get(key)) is not None and not running.done():
            return  # one request at a time per EVSE; the next cycle decides again
        charger_id, evse = key.split("/")
        previous = self.sent.get(key)
        increase = previous is not None and limit_w > previous.limit_w + EPS

        async def send() -> None:
            self.sending[key] = (limit_w, utcnow())
            try:
                await self.commands.execute(SetChargingLimit(charger_id, int(evse), limit_w, "dynamic", phases,
                                                             self.cfg.profile_validity_s), self.actor)  # fmt: skip
            except CommandError as e:
                log.warning("limit not taken key=%s limit_w=%.0f: %s", key, limit_w, e.message)
                return
            finally:
                self.sending.pop(key, None)
            if previous is None or abs(limit_w - previous.limit_w) > EPS:
                self.sent[key] = Sent(limit_w, now, now if increase or previous is None else previous.increased_at,
                                      utcnow(), previous.limit_w if previous else None)  # fmt: skip
            else:  # renewed
                self.sent[key] = replace(previous, at=now)
            self.image.set(evse_point(charger_id, int(evse), "limit_w"), limit_w)

        self._inflight[key] = self._spawn(send())

    def _lift(self, charger: Charger, now: float) -> None:
        """While its sessions are steered, a charger's own maximum is its rating (the ceiling), not its baseline;
        renewed before it lapses, so that the baseline is back soon after the gateway is gone."""
        last = self.lifted.get(charger.id)
        if self.baseline.get(charger.id, charger.max_w) >= charger.max_w or (
            last is not None and now - last < self.cfg.profile_validity_s / 2
        ):
            return
        self.lifted[charger.id] = now  # tried or not: not again before it is due

        async def send() -> None:
            try:
                await self.commands.execute(SetChargingLimit(charger.id, 0, charger.max_w, "ceiling", charger.phases,
                                                             self.cfg.profile_validity_s), self.actor)  # fmt: skip
            except CommandError as e:
                log.warning("charger keeps its baseline as its maximum charger=%s: %s", charger.id, e.message)

        self._spawn(send())

    def _publish(self, snap: Snapshot) -> None:
        room = headroom(snap)["site"]
        values: dict[str, Any] = {
            "site/limit_w": self.site_limit()[0], "site/mode": self.mode, "site/failsafe": self.failsafe,
            "site/ev_power_w": sum(d.draw_w or 0.0 for d in snap.demands),
            "site/headroom_w": None if room == float("inf") else round(room, 1),
        }  # fmt: skip
        if self.site.grid_meter:
            values["site/grid_power_w"] = None if self.failsafe else snap.grid_w
        for key, a in self.allocation.items():
            charger_id, evse = key.split("/")
            values[evse_point(charger_id, int(evse), "limit_reason")] = a.reason
        self.image.update(values)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- commands it owns ----------------------------------------------------------------------------------

    def _must_be_active(self) -> None:
        if not self.active:
            raise CommandError("disabled", "the load cap is off: it needs loadcap.enabled and a site limit "
                               "(site.limit_w or limit_a, a limit_schedule or a group limit)")  # fmt: skip

    async def _set_site_limit(self, cmd: SetSiteLimit) -> dict[str, Any]:
        self._must_be_active()
        if cmd.limit_w is None:
            self.external.pop(cmd.source, None)
        elif cmd.limit_w < 0:
            raise CommandError("invalid", "a site limit is not negative")
        else:
            self.external[cmd.source] = cmd.limit_w
        await self.cycle()
        return {"limit_w": self.site_limit()[0], "external": dict(self.external)}

    async def _set_mode(self, cmd: SetMode) -> dict[str, Any]:
        self._must_be_active()
        if cmd.mode not in ("automatic", "manual"):
            raise CommandError("invalid", f"mode {cmd.mode!r}: automatic or manual")
        self.mode = cmd.mode
        await self.cycle()
        return {"mode": self.mode}

    async def _set_manual_limit(self, cmd: SetManualLimit) -> dict[str, Any]:
        self._must_be_active()
        key = f"{cmd.charger_id}/{cmd.evse}"
        charger = self.site.chargers.get(cmd.charger_id)
        if charger is None or cmd.evse not in charger.evses:
            raise CommandError("unknown_target", f"no EVSE {key} on this site")
        if cmd.limit_w is None:
            self.manual.pop(key, None)
        elif cmd.limit_w < 0:
            raise CommandError("invalid", "a limit is not negative")
        else:
            self.manual[key] = cmd.limit_w
        await self.cycle()
        return {"evse": key, "manual_limit_w": self.manual.get(key), "mode": self.mode}


def laxity_s(departure: datetime, now: datetime, needed_wh: float, so_far_wh: float | None,
             max_w: float) -> float | None:  # fmt: skip
    """Slack before departure: the time left minus the time the energy still needed takes at the car's
    maximum. Negative: it leaves short however it is served. None when it cannot take power at all."""
    if max_w <= 0:
        return None
    remaining_wh = max(0.0, needed_wh - (so_far_wh or 0.0))
    return (departure - now).total_seconds() - remaining_wh / max_w * 3600.0


def _site_phases(charger: Charger, used: tuple[int, ...]) -> tuple[int, ...]:
    """The charger's phases as the site's: its rotation says which site phase its L1, L2, L3 are."""
    rotation = [int(charger.phase_rotation[i * 2 + 1]) for i in range(3)]
    return tuple(sorted(rotation[p - 1] for p in used))


def _fits(snap: Snapshot, planned: dict[str, float], margin_w: float) -> bool:
    """Whether the limits would keep the site under its real limit: the margin the allocator keeps is room for
    the building's noise, not a reason to cut everyone by a few watts at every reading."""
    room = headroom(snap)
    load: dict[str, float] = {}
    for d in snap.demands:
        for name, c in coefficients(d).items():
            load[name] = load.get(name, 0.0) + planned.get(d.key, 0.0) * c

    def slack(name: str) -> float:
        if snap.failsafe_w is not None:
            return 0.0
        return margin_w if name == SITE else margin_w / 3 if name.startswith("phase:") else 0.0

    return all(load.get(name, 0.0) <= value + slack(name) + EPS for name, value in room.items())
