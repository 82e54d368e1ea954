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

    async def query(self, kind: str | None = None, since: datetime | None = None, limit: int = 1000) -> list[dict]:
        clause, params = where(("kind = ?", kind), ("ts >= ?", since and iso(since)))
        rows = await self.db.fetchall(
            f"SELECT id, ts, kind, payload FROM events {clause} ORDER BY id DESC LIMIT ?", (*params, limit)
        )
        return [{"id": r["id"], "ts": r["ts"], "kind": r["kind"], "payload": json.loads(r["payload"])} for r in rows]

    async def prune(self, before: datetime) -> None:
        await self.db.execute("DELETE FROM events WHERE ts < ?", (iso(before),))
