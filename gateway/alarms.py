"""The site's alarms as every part sees them: the operators' commands on them, and the live list.

The alarm engine (``rules/alarms.py``) and its shell (``rules/annunciator.py``) decide; the API, MQTT and OPC UA read
the :class:`AlarmList` the shell keeps up to date and act through the command door with the commands below (the
door checks the role and audits; the shell registers their handler). An alarm reads, everywhere, as one JSON
record::

    {"id": "connector-faulted:CP01:1", "definition": "connector-faulted", "source": "builtin",
     "point": "chargers/CP01/evse/1/status", "state": "active_unacknowledged", "active": true,
     "acknowledged": false, "condition": "state", "level": 15, "severity": 500, "message": "...",
     "value": "Faulted", "context": {"error_code": "GroundFailure", ...}, "since": "...", "raised_at": "...",
     "shelved_until": null, "out_of_service_until": null, "by": null, "comment": null, "masked_by": []}

States (ISA-18.2, OPC UA Part 9 names): normal, active_unacknowledged, active_acknowledged,
returned_unacknowledged, suppressed (masked by another alarm), shelved, out_of_service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.auth import Role
from gateway.commands import Command, CommandError

MAX_SHELVE_MINUTES = 7 * 24 * 60  # OPC UA MaxTimeShelved: a shelf always ends
MAX_COMMENT = 500
MAX_ID = 200


def _check(alarm_id: str, comment: str | None) -> None:
    if not isinstance(alarm_id, str) or not 0 < len(alarm_id) <= MAX_ID:
        raise CommandError("invalid", f"an alarm id is 1 to {MAX_ID} characters")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise CommandError("invalid", f"a comment is text of at most {MAX_COMMENT} characters")


def _check_minutes(minutes: Any, required: bool) -> None:
    if minutes is None and not required:
        return
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not 0 < minutes <= MAX_SHELVE_MINUTES:
        raise CommandError("invalid", f"minutes must be a number from 1 to {MAX_SHELVE_MINUTES} (7 days)")


@dataclass(frozen=True)
class _AlarmCommand(Command):
    alarm_id: str
    comment: str | None

    @property
    def target(self) -> str | None:
        return f"alarm:{self.alarm_id}"


@dataclass(frozen=True)
class AcknowledgeAlarm(_AlarmCommand):
    """The operator has seen it (with a comment)."""

    comment: str | None = None

    def __post_init__(self) -> None:
        _check(self.alarm_id, self.comment)


@dataclass(frozen=True)
class ShelveAlarm(_AlarmCommand):
    """Silence an alarm for a while (it is still evaluated and journaled); it comes back by itself."""

    minutes: float = 60
    comment: str | None = None

    def __post_init__(self) -> None:
        _check(self.alarm_id, self.comment)
        _check_minutes(self.minutes, required=True)


@dataclass(frozen=True)
class UnshelveAlarm(_AlarmCommand):
    comment: str | None = None

    def __post_init__(self) -> None:
        _check(self.alarm_id, self.comment)


@dataclass(frozen=True)
class SetAlarmInService(_AlarmCommand):
    """Take an alarm out of service (maintenance: optionally for some minutes) or return it to service."""

    required_role: ClassVar[Role] = Role.admin
    in_service: bool = False
    comment: str | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        _check(self.alarm_id, self.comment)
        _check_minutes(self.minutes, required=False)


class AlarmFeed:
    """Alarms changed since the consumer last looked, the latest record of each (bounded by the alarms)."""

    def __init__(self, alarms: AlarmList) -> None:
        self._alarms = alarms
        self._pending: dict[str, dict[str, Any]] = {}
        self._ready = asyncio.Event()

    def _offer(self, record: dict[str, Any]) -> None:
        self._pending[record["id"]] = record
        self._ready.set()

    async def get(self) -> list[dict[str, Any]]:
        await self._ready.wait()
        changes, self._pending = self._pending, {}
        self._ready.clear()
        return list(changes.values())

    def close(self) -> None:
        self._alarms._feeds.discard(self)


class AlarmList:
    """Every alarm's record by id, and its definitions; the annunciator writes, the others read and follow."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.definitions: list[dict[str, Any]] = []
        self.ready = asyncio.Event()  # set once the annunciator has loaded the saved alarms
        self._feeds: set[AlarmFeed] = set()

    def update(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.records[record["id"]] = record
            for feed in self._feeds:
                feed._offer(record)

    def get(self, alarm_id: str) -> dict[str, Any] | None:
        return self.records.get(alarm_id)

    def active(self) -> list[dict[str, Any]]:
        """Every alarm not in the normal state (active, unacknowledged, silenced), most severe first."""
        return sorted((r for r in self.records.values() if r["state"] != "normal"),
                      key=lambda r: (-r["level"], r["raised_at"] or "", r["id"]))  # fmt: skip

    def feed(self) -> AlarmFeed:
        feed = AlarmFeed(self)
        self._feeds.add(feed)
        return feed
