"""The durable outbox, delivery side: telemetry batches in, the disk budget kept, messages out in order.

Events (sessions, status changes, chargers coming and going, allocation changes, alarms) enter the outbox in
the store, in the same transaction as their record. Telemetry enters here: every ``interval_s`` the points
that changed (latest value each, from a coalescing feed) become one message. Either way a message counts as
acquired once it is committed, and leaves only when its receiver acknowledged it (:class:`Delivery`).

Budget: when the queued payload bytes pass ``outbox.max_mb``, or the disk's free space falls under
``outbox.min_free_mb``, the oldest telemetry is dropped (counted) -- never an event. The counters are points
in the process image (``outbox/queued``, ``queued_bytes``, ``dropped``, ``oldest_age_s``).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from typing import Any

from gateway.clock import iso, parse_iso, utcnow
from gateway.points import ProcessImage
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.outbox import TELEMETRY, Message

log = logging.getLogger(__name__)

MB = 1_000_000
COUNTERS_EVERY_S = 5.0  # counters and budget at least this often, besides after every telemetry batch
OWN_PREFIX = "outbox/"  # its own counters are state, not telemetry: they would change every batch


class Outbox:
    def __init__(self, settings: Settings, image: ProcessImage, store: Store, interval_s: float) -> None:
        self.settings = settings.outbox
        self.state_dir = settings.gateway.state_dir
        self.image = image
        self.store = store
        self.interval_s = interval_s
        self.batches = 0
        self.feed = image.feed("")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_counters = 0.0
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                await self.collect()
                if self.batches == 0 or loop.time() >= next_counters:
                    await self.keep_budget()
                    next_counters = loop.time() + COUNTERS_EVERY_S
        finally:
            self.feed.close()

    async def collect(self) -> bool:
        """One telemetry message with what changed since the last one; False when nothing did."""
        changes = self.feed.get_nowait()
        points = {name: [p.value, iso(p.ts), str(p.quality)] for name, p in changes.items()
                  if not name.startswith(OWN_PREFIX)}  # fmt: skip
        if not points:
            return False
        await self.store.outbox.append(TELEMETRY, "telemetry", {"points": points})
        self.batches += 1
        return True

    async def keep_budget(self) -> int:
        """Drop the oldest telemetry when over budget or short of disk; publish the counters."""
        totals = await self.store.outbox.totals()
        budget = int(self.settings.max_mb * MB)
        if self._disk_free_mb() < self.settings.min_free_mb:
            budget = min(budget, totals.bytes // 2)
        dropped = 0
        if totals.bytes > budget:
            dropped = await self.store.outbox.drop_telemetry(budget)
            if dropped:
                log.warning("outbox over budget: dropped oldest telemetry messages=%d budget_bytes=%d", dropped,
                            budget)  # fmt: skip
            totals = await self.store.outbox.totals()
        age = (utcnow() - parse_iso(totals.oldest_ts)).total_seconds() if totals.oldest_ts else 0.0
        self.image.update({
            "outbox/queued": totals.messages, "outbox/queued_bytes": totals.bytes, "outbox/dropped": totals.dropped,
            "outbox/oldest_age_s": round(max(age, 0.0), 1)})  # fmt: skip
        return dropped

    def _disk_free_mb(self) -> float:
        try:
            return shutil.disk_usage(self.state_dir).free / MB
        except OSError:
            return float("inf")  # cannot tell: the byte budget alone decides

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "queued": self.image.value("outbox/queued", 0),
            "queued_bytes": self.image.value("outbox/queued_bytes", 0),
            "dropped": self.image.value("outbox/dropped", 0),
            "oldest_age_s": self.image.value("outbox/oldest_age_s", 0.0),
            "telemetry_coalesced": self.feed.coalesced,
        }


class Delivery:
    """One receiver's way through the outbox: messages in seq order, at most `window` unacknowledged.

    A receiver calls :meth:`next` for the messages to send and :meth:`acknowledged` for each it has; the
    acknowledged ones are deleted in batches. After a reconnection a new Delivery starts again from the oldest
    message still queued, so what was sent but not acknowledged is sent again (at least once, in order).
    """

    def __init__(self, store: Store, window: int) -> None:
        self.outbox = store.outbox
        self.window = window
        self._cursor = 0
        self._inflight: set[int] = set()
        self._acked: list[int] = []
        self._room = asyncio.Event()
        self._room.set()

    async def next(self) -> list[Message]:
        """Wait until there is something to send and room in the window; return it, oldest first."""
        while True:
            await self._room.wait()
            self.outbox.arrived.clear()
            messages = await self.outbox.after(self._cursor, self.window - len(self._inflight))
            if messages:
                self._cursor = messages[-1].seq
                self._inflight.update(m.seq for m in messages)
                if len(self._inflight) >= self.window:
                    self._room.clear()
                return messages
            await self.outbox.arrived.wait()

    def acknowledged(self, message: Message) -> None:
        self._inflight.discard(message.seq)
        self._acked.append(message.seq)
        self._room.set()

    async def flush(self) -> int:
        """Delete what was acknowledged so far; returns how many."""
        acked, self._acked = self._acked, []
        await self.outbox.acknowledge(acked)
        return len(acked)
