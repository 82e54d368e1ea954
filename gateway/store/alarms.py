"""Alarms on disk: each alarm's state, the journal of its transitions, and the notifications waiting for delivery.

One :meth:`Alarms.commit` writes what a batch of transitions changed -- states, journal rows, their ``alarms``
messages for the outbox (MQTT) and their notifications (e-mail, webhook) -- in one transaction: a power cut loses
all of it or none. Notifications stay queued until their receiver took them, whatever the wait (an SMTP server down
for a day), and keep their delivery state after: sent, when, in which message, late or not.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiosqlite

from gateway.clock import iso
from gateway.store.db import Database, where
from gateway.store.outbox import Outbox, dumps

ALARMS = "alarms"  # the outbox stream (MQTT topic evedge/{id}/alarms)


@dataclass
class Batch:
    """What one round of the alarm shell changed, to be committed together."""

    states: list[tuple[str, str, str, str, int, dict[str, Any]]] = field(default_factory=list)
    # (ts, alarm, kind, before, after, level, actor, comment, record)
    journal: list[tuple[datetime, str, str, str, str, int, str | None, str | None, dict[str, Any]]] = field(
        default_factory=list)  # fmt: skip
    # (created, route, channel, alarm, kind, record)
    notifications: list[tuple[datetime, str, str, str, str, dict[str, Any]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.states or self.journal or self.notifications)


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    created: str
    route: str
    channel: str
    alarm: str
    kind: str
    record: dict[str, Any]
    attempts: int


class Alarms:
    def __init__(self, db: Database, outbox: Outbox) -> None:
        self.db = db
        self.outbox = outbox
        self.queued = asyncio.Event()  # set when notifications were committed; the deliverer clears it
        self._queued_now = False
        db.settled_hooks.append(self._settled)

    def _settled(self, committed: bool) -> None:
        if committed and self._queued_now:
            self.queued.set()
        self._queued_now = False

    async def load(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(id, definition, point, engine data) of every saved alarm."""
        rows = await self.db.fetchall("SELECT id, definition, point, data FROM alarm_state ORDER BY id")
        return [(r["id"], r["definition"], r["point"], json.loads(r["data"])) for r in rows]

    async def commit(self, batch: Batch) -> None:
        async def op(conn: aiosqlite.Connection) -> None:
            await conn.executemany(
                "INSERT INTO alarm_state (id, definition, point, state, level, data, updated) VALUES "
                "(?, ?, ?, ?, ?, ?, datetime('now')) ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
                "level = excluded.level, data = excluded.data, updated = excluded.updated",
                [(i, d, p, s, lv, dumps(data)) for i, d, p, s, lv, data in batch.states],
            )  # fmt: skip
            for ts, alarm, kind, before, after, level, actor, comment, record in batch.journal:
                await conn.execute(
                    "INSERT INTO alarm_journal (ts, alarm, kind, before, after, level, actor, comment, record) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (iso(ts), alarm, kind, before, after, level, actor, comment, dumps(record)),
                )  # fmt: skip
                transition = {"kind": kind, "before": before, "after": after, "actor": actor, "comment": comment}
                await self.outbox.put_within(conn, ALARMS, kind, {"alarm": record, "transition": transition}, ts)
            await conn.executemany(
                "INSERT INTO alarm_notifications (created, route, channel, alarm, kind, record, state, next_try) "
                "VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)",
                [(iso(c), route, channel, alarm, kind, dumps(record), iso(c))
                 for c, route, channel, alarm, kind, record in batch.notifications],
            )  # fmt: skip
            if batch.notifications:
                self._queued_now = True

        await self.db.write(op)

    async def history(self, alarm: str | None = None, since: datetime | None = None, until: datetime | None = None,
                      limit: int = 1000) -> list[dict[str, Any]]:  # fmt: skip
        """Transitions, newest first."""
        clause, params = where(("alarm = ?", alarm), ("ts >= ?", since and iso(since)), ("ts < ?", until and iso(until)))
        rows = await self.db.fetchall(
            "SELECT id, ts, alarm, kind, before, after, level, actor, comment, record FROM alarm_journal "
            f"{clause} ORDER BY id DESC LIMIT ?", (*params, limit))  # fmt: skip
        return [{"id": r["id"], "ts": r["ts"], "alarm": r["alarm"], "kind": r["kind"], "before": r["before"],
                 "after": r["after"], "level": r["level"], "actor": r["actor"], "comment": r["comment"],
                 "record": json.loads(r["record"])} for r in rows]  # fmt: skip

    # -- notifications ----------------------------------------------------------------------------------------

    async def due(self, now: datetime, limit: int = 1000) -> list[Notification]:
        """Queued notifications whose next try has come, oldest first."""
        rows = await self.db.fetchall(
            "SELECT id, created, route, channel, alarm, kind, record, attempts FROM alarm_notifications "
            "WHERE state = 'queued' AND next_try <= ? ORDER BY id LIMIT ?", (iso(now), limit))  # fmt: skip
        return [Notification(r["id"], r["created"], r["route"], r["channel"], r["alarm"], r["kind"],
                             json.loads(r["record"]), r["attempts"]) for r in rows]  # fmt: skip

    async def next_try(self) -> str | None:
        row = await self.db.fetchone("SELECT min(next_try) FROM alarm_notifications WHERE state = 'queued'")
        return row[0] if row else None

    async def sent(self, ids: list[int], batch: str, at: datetime, late: bool) -> None:
        await self.db.write(lambda conn: conn.executemany(
            "UPDATE alarm_notifications SET state = 'sent', sent_at = ?, batch = ?, late = ?, attempts = attempts + 1,"
            " last_error = NULL WHERE id = ?", [(iso(at), batch, int(late), i) for i in ids]))  # fmt: skip

    async def failed(self, ids: list[int], error: str, next_try: datetime) -> None:
        await self.db.write(lambda conn: conn.executemany(
            "UPDATE alarm_notifications SET attempts = attempts + 1, last_error = ?, next_try = ? WHERE id = ?",
            [(error[:500], iso(next_try), i) for i in ids]))  # fmt: skip

    async def notifications(self, alarm: str | None = None, state: str | None = None,
                            limit: int = 1000) -> list[dict[str, Any]]:  # fmt: skip
        """Each notification's delivery state, newest first."""
        clause, params = where(("alarm = ?", alarm), ("state = ?", state))
        rows = await self.db.fetchall(
            "SELECT id, created, route, channel, alarm, kind, state, attempts, next_try, last_error, sent_at, batch, "
            f"late FROM alarm_notifications {clause} ORDER BY id DESC LIMIT ?", (*params, limit))  # fmt: skip
        return [dict(r) | {"late": bool(r["late"])} for r in rows]

    async def prune(self, before: datetime) -> None:
        """Journal rows and delivered notifications older than `before` (queued ones wait, however old)."""

        async def op(conn: aiosqlite.Connection) -> None:
            await conn.execute("DELETE FROM alarm_journal WHERE ts < ?", (iso(before),))
            await conn.execute("DELETE FROM alarm_notifications WHERE state = 'sent' AND created < ?", (iso(before),))

        await self.db.write(op)
