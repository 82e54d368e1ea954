"""The outbox table: north-bound messages committed before they count as acquired, deleted once acknowledged.

A message is written in the same SQLite transaction as the record it tells about (a transaction's start, a
status change), so a power cut can lose neither one without the other. Each carries ``seq`` (the table's
AUTOINCREMENT key: one gap-free counter per gateway over all durable messages), a unique ``id`` and ``ts``.
Counters (messages, bytes, dropped) are kept by triggers in the same transactions, so they are never wrong
after a crash. Delivery, budget and telemetry live in ``bridges/outbox.py``; this module is only the table.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from gateway.clock import iso, utcnow
from gateway.store.db import Database

TELEMETRY, EVENTS = "telemetry", "events"


@dataclass(frozen=True, slots=True)
class Message:
    seq: int
    id: str
    ts: str
    stream: str
    kind: str
    payload: str  # JSON text, as stored

    def envelope(self) -> bytes:
        """The message as receivers get it: {"id", "seq", "ts", "kind", "data"} (built without re-parsing)."""
        head = json.dumps({"id": self.id, "seq": self.seq, "ts": self.ts, "kind": self.kind}, separators=(",", ":"))
        return f'{head[:-1]},"data":{self.payload}}}'.encode()


@dataclass(frozen=True, slots=True)
class Totals:
    messages: int
    bytes: int
    dropped: int
    oldest_ts: str | None


def dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False, default=str)


class Outbox:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Off until a receiver exists (the composition root turns it on with a bridge): with nobody to take
        # them, messages would only fill the disk.
        self.enabled = False
        self.arrived = asyncio.Event()  # set when new messages are committed; the deliverer clears it
        self._queued_now = False
        db.settled_hooks.append(self._settled)

    def _settled(self, committed: bool) -> None:
        if committed and self._queued_now:
            self.arrived.set()
        self._queued_now = False

    async def put_within(self, conn: aiosqlite.Connection, stream: str, kind: str, payload: Any,
                         at: datetime | None = None) -> None:  # fmt: skip
        """Queue a message inside a write that is already running (same transaction as its record)."""
        if self.enabled:
            await conn.execute(
                "INSERT INTO outbox (id, ts, stream, kind, payload, droppable) VALUES (?, ?, ?, ?, ?, ?)",
                (uuid.uuid4().hex, iso(at or utcnow()), stream, kind, dumps(payload), int(stream == TELEMETRY)),
            )
            self._queued_now = True

    async def append(self, stream: str, kind: str, payload: Any, at: datetime | None = None) -> None:
        """Queue a message in a commit of its own; returns once it is on disk."""

        async def op(conn: aiosqlite.Connection) -> None:
            await self.put_within(conn, stream, kind, payload, at)

        await self.db.write(op)

    async def after(self, seq: int, limit: int = 100) -> list[Message]:
        """The messages after seq, in order."""
        rows = await self.db.fetchall(
            "SELECT seq, id, ts, stream, kind, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )
        return [Message(*row) for row in rows]

    async def acknowledge(self, seqs: list[int]) -> None:
        """The receiver has them: delete."""
        if seqs:

            async def op(conn: aiosqlite.Connection) -> None:
                await conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

            await self.db.write(op)

    async def drop_telemetry(self, target_bytes: int) -> int:
        """Drop the oldest telemetry until the queued bytes are at most target_bytes (or no telemetry is
        left); returns how many messages went. Events are never dropped."""

        async def op(conn: aiosqlite.Connection) -> int:
            dropped = 0
            while True:
                (queued,) = await (await conn.execute("SELECT bytes FROM outbox_totals")).fetchone()
                if queued <= target_bytes:
                    return dropped
                cursor = await conn.execute(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE droppable = 1 ORDER BY seq "
                    "LIMIT ?)", (_drop_batch(queued - target_bytes),)
                )  # fmt: skip
                if cursor.rowcount == 0:
                    return dropped
                dropped += cursor.rowcount
                await conn.execute("UPDATE outbox_totals SET dropped = dropped + ?", (cursor.rowcount,))

        return await self.db.write(op)

    async def totals(self) -> Totals:
        row = await self.db.fetchone("SELECT messages, bytes, dropped FROM outbox_totals")
        oldest = await self.db.fetchone("SELECT ts FROM outbox ORDER BY seq LIMIT 1")
        assert row is not None
        return Totals(row[0], row[1], row[2], oldest[0] if oldest else None)


def _drop_batch(excess_bytes: int) -> int:
    # Enough rows to cover the excess if telemetry batches were ~1 KiB; the loop goes on when they are smaller.
    return max(1, min(1000, excess_bytes // 1024 + 1))
