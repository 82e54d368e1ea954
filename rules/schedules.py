"""Schedules: time-of-use site limits and activation groups, on APScheduler 3 cron triggers.

- ``[[limit_schedule]]``: from each entry's cron moments on, the site limit is its ``limit_w`` until the next
  entry's moment (the strictest of this and the other limits holds). Published as ``site/schedule_limit_w``.
- ``[[activation_groups]]`` (ten at most): weekly windows ("mon-fri 07:00-19:00", "sun 22:00-06:00" runs into
  Monday) during which their connectors may charge; a connector in several groups may charge when any of them
  is open; outside all of them it is made unavailable (ChangeAvailability), and available again when a window
  opens. A cron trigger at every window's start and end re-evaluates.
All in the site's time zone (``site.timezone``). Deciding whether a moment is in a window is pure.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from gateway.auth import Actor, Role
from gateway.clock import utcnow
from gateway.commands import CommandError, Commands, SetAvailability
from gateway.points import ProcessImage
from gateway.settings import ActivationGroupSettings, LimitScheduleSettings, Settings

log = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^\s*(?P<days>\S+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")
SCHEDULE_LIMIT = "site/schedule_limit_w"  # the scheduled site limit, for the load cap


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after midnight
    end: int  # minutes after midnight; at or before start: the window runs past midnight
    cron_days: str  # the days as cron says them

    def open_at(self, at: datetime) -> bool:
        minute, day = at.hour * 60 + at.minute, at.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        return (day in self.days and minute >= self.start) or ((day - 1) % 7 in self.days and minute < self.end)


def parse_days(text: str) -> frozenset[int]:
    """'mon-fri', 'sat,sun', 'mon-wed,fri', '*' -> weekday numbers; ValueError when it is not that."""
    text = text.lower()
    if text in ("*", "daily"):
        return frozenset(range(7))
    found: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"{part!r}: days are mon tue wed thu fri sat sun, as a-b or a,b")
        a, b = DAYS.index(first), DAYS.index(last or first)
        found.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(found)


def parse_window(text: str) -> Window:
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError(f"{text!r}: a window is DAYS HH:MM-HH:MM, e.g. mon-fri 07:00-19:00")
    start, end = (_minutes(match[part]) for part in ("start", "end"))
    days = match["days"].lower()
    return Window(parse_days(days), start, end, "*" if days in ("*", "daily") else days)


def _minutes(text: str) -> int:
    hours, minutes = (int(x) for x in text.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise ValueError(f"{text!r} is not a time of day")
    return hours * 60 + minutes


def scheduled_limit(entries: list[LimitScheduleSettings], at: datetime, tz: ZoneInfo) -> float | None:
    """The limit of the entry whose cron moment came last before `at` (None: no entry yet, or none)."""
    best: tuple[datetime, float] | None = None
    for entry in entries:
        last = _last_fire(CronTrigger.from_crontab(entry.cron, timezone=tz), at)
        if last is not None and (best is None or last > best[0]):
            best = (last, entry.limit_w)
    return best[1] if best else None


def _last_fire(trigger: CronTrigger, at: datetime) -> datetime | None:
    """The trigger's latest moment at or before `at` (None: none in five years). It looks back twice as far each
    round: an every-minute line takes one step, a yearly one (a season's limit) a few dozen."""
    # In UTC: aware datetimes in one zone add and compare by wall clock, which repeats an hour when summer time
    # ends (moment + 1 s would go back an hour there, and the loop would never end).
    at, back = at.astimezone(UTC), timedelta(minutes=1)
    while back < timedelta(days=5 * 366):
        moment, found = trigger.get_next_fire_time(None, at - back), None
        while moment is not None and moment <= at:
            found = moment = moment.astimezone(UTC)
            moment = trigger.get_next_fire_time(moment, moment + timedelta(seconds=1))
        if found is not None or moment is None:  # None: it never comes (a 30 February)
            return found
        back *= 2
    return None


def check(settings: Settings) -> list[str]:
    """Cron lines, windows and the time zone that do not parse, weekday numbers, EVSEs that are not there; for
    check-config."""
    problems = []
    try:
        tz = ZoneInfo(settings.site.timezone)
    except (KeyError, ValueError):
        return [f"site.timezone: {settings.site.timezone!r} is not a time zone (e.g. Europe/Paris)"]
    for n, entry in enumerate(settings.limit_schedule):
        try:
            CronTrigger.from_crontab(entry.cron, timezone=tz)
        except ValueError as e:
            problems.append(f"limit_schedule[{n}].cron: {entry.cron!r}: {e}")
            continue
        if re.search(r"\d", entry.cron.split()[4]):
            problems.append(f"limit_schedule[{n}].cron: {entry.cron!r}: give the weekdays by name (mon-fri): "
                            "APScheduler 3 counts 0 as Monday, crontab as Sunday")  # fmt: skip
    evses = {c.id: c.evses for c in settings.chargers}
    for group in settings.activation_groups:
        for window in group.windows:
            try:
                parse_window(window)
            except ValueError as e:
                problems.append(f"activation_groups.{group.id}.windows: {e}")
        for member in group.connectors:  # the charger ids are checked with the settings
            charger_id, slash, evse = member.partition("/")
            if slash and charger_id in evses and not (evse.isdigit() and 1 <= int(evse) <= evses[charger_id]):
                problems.append(f"activation_groups.{group.id}.connectors: {member!r}: {charger_id} has EVSEs 1 "
                                f"to {evses[charger_id]}")  # fmt: skip
    return problems


class Schedules:
    def __init__(self, settings: Settings, image: ProcessImage, commands: Commands,
                 clock: Callable[[], datetime] = utcnow) -> None:  # fmt: skip
        self.entries = settings.limit_schedule
        self.groups = settings.activation_groups
        self.tz = ZoneInfo(settings.site.timezone)
        self.image = image
        self.commands = commands
        self.clock = clock
        self.members = _members(settings.activation_groups, {c.id: c.evses for c in settings.chargers})
        self.windows = {g.id: [parse_window(w) for w in g.windows] for g in settings.activation_groups}
        self.available: dict[tuple[str, int], bool] = {}  # what each connector was last made
        self.actor = Actor("schedule", Role.operator, "schedule")

    @property
    def needed(self) -> bool:
        return bool(self.entries or self.groups)

    async def run(self) -> None:
        scheduler = AsyncIOScheduler(timezone=self.tz)
        for entry in self.entries:
            scheduler.add_job(self.apply, CronTrigger.from_crontab(entry.cron, timezone=self.tz))
        for windows in self.windows.values():
            for w in windows:
                for minute in (w.start, w.end % 1440):
                    scheduler.add_job(self.apply, CronTrigger(day_of_week="*", hour=minute // 60, minute=minute % 60,
                                                              timezone=self.tz))  # fmt: skip
        scheduler.start()
        feed = self.image.feed("chargers/")
        try:
            while True:
                await self.apply()
                # Besides the triggers: a charger that comes (back) online is told where it stands at once.
                while not (online := [name for name in await feed.get() if name.endswith("/online")]):
                    pass
                for name in online:
                    if not self.image.value(name):
                        self.forget(name.split("/")[1])
        finally:
            feed.close()
            scheduler.shutdown(wait=False)

    async def apply(self) -> None:
        now = self.clock().astimezone(self.tz)
        self.image.set(SCHEDULE_LIMIT, scheduled_limit(self.entries, now, self.tz) if self.entries else None)
        for (charger_id, evse), groups in self.members.items():
            allowed = any(w.open_at(now) for g in groups for w in self.windows[g])
            online = bool(self.image.value(f"chargers/{charger_id}/online"))
            if not online or self.available.get((charger_id, evse)) == allowed:
                continue
            try:
                await self.commands.execute(SetAvailability(charger_id, allowed, evse), self.actor)
                self.available[(charger_id, evse)] = allowed
                log.info("activation %s charger=%s evse=%d", "open" if allowed else "closed", charger_id, evse)
            except CommandError as e:
                log.warning("availability not set charger=%s evse=%d: %s", charger_id, evse, e.message)

    def forget(self, charger_id: str) -> None:
        """A charger that reconnects is told again."""
        for key in [k for k in self.available if k[0] == charger_id]:
            del self.available[key]


def _members(groups: list[ActivationGroupSettings], evses: dict[str, int]) -> dict[tuple[str, int], list[str]]:
    """(charger, EVSE) -> the activation groups it belongs to."""
    found: dict[tuple[str, int], list[str]] = {}
    for group in groups:
        for member in group.connectors:
            charger_id, _, evse = member.partition("/")
            for n in [int(evse)] if evse else range(1, evses.get(charger_id, 1) + 1):
                found.setdefault((charger_id, n), []).append(group.id)
    return found
