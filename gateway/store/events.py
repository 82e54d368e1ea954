"""Events: what happened on the site, kept in order -- sessions started and stopped, status changes, chargers
coming and going, allocation changes, the fail-safe on and off.

An event is written in the same transaction as the record it tells about, together with its outbox message
(when a north bridge takes them), and handed to live listeners (the OPC UA server) once that transaction is
committed. A listener keeps a bounded backlog: a slow one loses its oldest events (counted), never slows a
writer.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from gateway.clock import iso, utcnow
from gateway.store.db import Database, where
from gateway.store.outbox import EVENTS, Outbox, dumps


@dataclass(frozen=True, slots=True)
class Event:
    ts: datetime
    kind: str
    payload: dict[str, Any]


class EventListener:
    """Events as they are committed; at most `backlog` wait, the oldest go first (counted in `dropped`)."""

    def __init__(self, events: Events, backlog: int) -> None:
        self._events = events
        self._queue: collections.deque[Event] = collections.deque(maxlen=backlog)
        self._ready = asyncio.Event()
        self.dropped = 0

    def _offer(self, event: Event) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(event)
        self._ready.set()

    async def get(self) -> list[Event]:
        """Wait for at least one event; return all waiting, oldest first."""
        await self._ready.wait()
        return self.drain()

    def drain(self) -> list[Event]:
        """The events waiting, oldest first (none: an empty list), without waiting."""
        events = list(self._queue)
        self._queue.clear()
        self._ready.clear()
        return events

    def close(self) -> None:
        self._events._listeners.discard(self)


class Events:
    def __init__(self, db: Database, outbox: Outbox) -> None:
        self.db = db
        self.outbox = outbox
        self._listeners: set[EventListener] = set()
        self._uncommitted: list[Event] = []
        db.settled_hooks.append(self._settled)

    async def record(self, kind: str, payload: dict[str, Any], at: datetime | None = None) -> None:
        """An event in a commit of its own; returns once it is on disk."""

        async def op(conn: aiosqlite.Connection) -> None:
            await self.within(conn, kind, payload, at)

        await self.db.write(op)

    async def within(self, conn: aiosqlite.Connection, kind: str, payload: dict[str, Any],
                     at: datetime | None = None) -> None:  # fmt: skip
        """An event inside a write that is already running: same transaction as the record it tells about."""
        at = at or utcnow()
        await conn.execute("INSERT INTO events (ts, kind, payload) VALUES (?, ?, ?)", (iso(at), kind, dumps(payload)))
        await self.outbox.put_within(conn, EVENTS, kind, payload, at)
        if self._listeners:
            self._uncommitted.append(Event(at, kind, payload))

    def listen(self, backlog: int = 1000) -> EventListener:
        listener = EventListener(self, backlog)
        self._listeners.add(listener)
        return listener

    def _settled(self, committed: bool) -> None:
        events, self._uncommitted = self._uncommitted, []
        if committed:
            for event in events:
                for listener in self._listeners:
                    listener._offer(event)

    async def query(self, kind: str | None = None, since: datetime | None = None, limit: int = 1000, *,
                    kinds: Sequence[str] = (), charger: str | None = None, until: datetime | None = None,
                    before: int | None = None) -> list[dict]:  # fmt: skip
        """Newest first: of a kind (or of any of kinds), about a charger, in [since, until), older than id before."""
        clause, params = where(("kind = ?", kind), ("ts >= ?", since and iso(since)), ("ts < ?", until and iso(until)),
                               ("json_extract(payload, '$.charger') = ?", charger), ("id < ?", before))  # fmt: skip
        if kinds:
            clause = f"{clause} AND " if clause else "WHERE "
            clause += f"kind IN ({', '.join('?' * len(kinds))})"
            params += list(kinds)
        rows = await self.db.fetchall(
            f"SELECT id, ts, kind, payload FROM events {clause} ORDER BY id DESC LIMIT ?", (*params, limit)
        )
        return [{"id": r["id"], "ts": r["ts"], "kind": r["kind"], "payload": json.loads(r["payload"])} for r in rows]

    async def allocation_limits(self, key: str, since: datetime, until: datetime | None = None,
                                limit: int = 5000) -> list[tuple[str, float | None]]:  # fmt: skip
        """What the load cap sent one EVSE ("CP01/1") at each allocation change in [since, until): (ts, W, None
        when it had no limit). Read out of each event by SQLite, never by decoding every site-wide allocation."""
        rows = await self.db.fetchall(
            "SELECT ts, json_extract(payload, ?) AS sent FROM events WHERE kind = 'allocation' AND ts >= ? "
            "AND (? IS NULL OR ts < ?) ORDER BY id LIMIT ?",
            (f'$.limits."{key}".sent_w', iso(since), until and iso(until), until and iso(until), limit),
        )
        return [(r["ts"], r["sent"]) for r in rows]

    async def prune(self, before: datetime) -> None:
        await self.db.execute("DELETE FROM events WHERE ts < ?", (iso(before),))
