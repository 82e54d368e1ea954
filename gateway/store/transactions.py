"""Charging sessions and the meter values that belong to them, version-blind.

A session is committed when it starts, moved forward by meter values, closed at stop. OCPP 1.6 sessions are
found again by the gateway's id (which is their transactionId), OCPP 2.0.1 ones by the charger's
transactionId: either way a stop after a gateway restart closes the right record.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from gateway.clock import iso, utcnow
from gateway.store.db import Database, where
from gateway.store.events import Events

log = logging.getLogger(__name__)

COLUMNS = (
    "id, charger_id, ocpp_id, evse, connector, id_tag, started_at, stopped_at, meter_start_wh, meter_last_wh, "
    "meter_stop_wh, energy_wh, soc_start, soc_end, stop_reason"
)
# What the API and the exports show, in this order; EXPORT_COLUMNS selects them so.
EXPORT_FIELDS = (
    "id", "charger", "evse", "connector", "id_tag", "started_at", "stopped_at", "meter_start_wh",
    "meter_stop_wh", "energy_wh", "soc_start", "soc_end", "stop_reason",
)  # fmt: skip
EXPORT_COLUMNS = ", ".join("charger_id" if f == "charger" else f for f in EXPORT_FIELDS)


# What sessions can be sorted by; id breaks ties, so paging is stable.
SORTS = ("started_at", "stopped_at", "id", "charger_id", "id_tag", "energy_wh", "soc_end", "stop_reason")


@dataclass(frozen=True)
class Filters:
    """Which sessions: started in [since, until), at a charger, with a badge, ended for a reason."""

    since: datetime | None = None
    until: datetime | None = None
    charger_id: str | None = None
    id_tag: str | None = None
    stop_reason: str | None = None

    def select(self, columns: str, sort: str = "started_at", descending: bool = True) -> tuple[str, list[Any]]:
        """The SELECT of these sessions' columns in this order (sort is one of SORTS), and its parameters."""
        if sort not in SORTS:
            raise ValueError(f"cannot sort sessions by {sort!r}")
        clause, params = where(("started_at >= ?", self.since and iso(self.since)),
                               ("started_at < ?", self.until and iso(self.until)),
                               ("charger_id = ?", self.charger_id), ("id_tag = ?", self.id_tag),
                               ("stop_reason = ?", self.stop_reason))  # fmt: skip
        order = "DESC" if descending else "ASC"
        tie = "" if sort == "id" else f", id {order}"
        return f"SELECT {columns} FROM transactions {clause} ORDER BY {sort} {order}{tie}", params


@dataclass(frozen=True)
class Transaction:
    id: int
    charger_id: str
    ocpp_id: str | None
    evse: int | None
    connector: int | None
    id_tag: str | None
    started_at: str | None
    stopped_at: str | None
    meter_start_wh: float | None
    meter_last_wh: float | None
    meter_stop_wh: float | None
    energy_wh: float | None
    soc_start: float | None
    soc_end: float | None
    stop_reason: str | None

    @property
    def open(self) -> bool:
        return self.stopped_at is None

    @property
    def energy_so_far_wh(self) -> float | None:
        if self.energy_wh is not None:
            return self.energy_wh
        return _energy(self.meter_start_wh, self.meter_last_wh)

    def as_json(self) -> dict[str, Any]:
        row = {**self.__dict__, "charger": self.charger_id}
        return {name: row[name] for name in EXPORT_FIELDS}


def _energy(start: float | None, stop: float | None) -> float | None:
    if start is None or stop is None:
        return None
    return round(stop - start, 3)


@dataclass(frozen=True)
class Sample:
    """One meter value: when, the numbers the gateway understood, and what the charger sent."""

    ts: datetime
    sampled_value: list[dict[str, Any]]
    energy_wh: float | None = None
    soc: float | None = None


class Transactions:
    def __init__(self, db: Database, events: Events) -> None:
        self.db = db
        self.site_events = events

    async def start(
        self,
        charger_id: str,
        evse: int,
        connector: int | None,
        id_tag: str | None,
        started_at: datetime,
        meter_start_wh: float | None,
        *,
        ocpp_id: str | None = None,
        soc: float | None = None,
    ) -> Transaction:
        """Open a session (committed on return). Idempotent: a charger repeating the same start gets the same one."""

        async def op(conn: aiosqlite.Connection) -> Transaction:
            now = iso(utcnow())
            if ocpp_id is not None:
                existing = await _one(
                    conn, "WHERE charger_id = ? AND ocpp_id = ? AND stopped_at IS NULL", (charger_id, ocpp_id)
                )
            else:
                existing = await _one(
                    conn,
                    "WHERE charger_id = ? AND evse = ? AND ocpp_id IS NULL AND id_tag IS ? AND started_at = ? "
                    "AND meter_start_wh IS ?",
                    (charger_id, evse, id_tag, iso(started_at), meter_start_wh),
                )
            if existing is not None:
                return existing
            for stale in await _close_superseded(conn, charger_id, evse, now):
                await self.site_events.within(conn, "transaction_stopped", stale.as_json())
            cursor = await conn.execute(
                "INSERT INTO transactions (charger_id, ocpp_id, evse, connector, id_tag, started_at, meter_start_wh, "
                "meter_last_wh, soc_start, soc_end, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (charger_id, ocpp_id, evse, connector, id_tag, iso(started_at), meter_start_wh, meter_start_wh,
                 soc, soc, now),
            )  # fmt: skip
            found = await _one(conn, "WHERE id = ?", (cursor.lastrowid,))
            assert found is not None
            await self.site_events.within(conn, "transaction_started", found.as_json())
            return found

        return await self.db.write(op)

    async def record_meter_values(
        self, charger_id: str, evse: int, transaction_id: int | None, samples: list[Sample]
    ) -> None:
        """Store the samples as received and move the session's meter and SoC forward, in one commit."""

        async def op(conn: aiosqlite.Connection) -> None:
            rows = []
            for s in samples:
                text = json.dumps(s.sampled_value, separators=(",", ":"))
                rows.append((charger_id, evse, transaction_id, iso(s.ts), text, _digest(text)))
            await conn.executemany(
                "INSERT OR IGNORE INTO meter_values (charger_id, evse, transaction_id, ts, sampled_value, digest) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            if transaction_id is not None:
                await _advance(conn, transaction_id, samples)

        await self.db.write(op)

    async def identify(self, transaction_id: int, id_tag: str) -> None:
        """The badge of a session learned after it started (2.0.1: plug in first, badge later). A session keeps
        the badge that started it: a different one shown to stop it does not replace it."""
        await self.db.execute(
            "UPDATE transactions SET id_tag = ?, updated_at = ? WHERE id = ? AND id_tag IS NULL",
            (id_tag, iso(utcnow()), transaction_id),
        )

    async def stop(
        self,
        transaction_id: int,
        stopped_at: datetime,
        meter_stop_wh: float | None,
        reason: str | None,
        *,
        soc: float | None = None,
        id_tag: str | None = None,
    ) -> Transaction | None:
        """Close a session; energy = meter stop - meter start. A repeated stop changes nothing."""

        async def op(conn: aiosqlite.Connection) -> Transaction | None:
            found = await _one(conn, "WHERE id = ?", (transaction_id,))
            if found is None or not found.open:
                return found
            stop_wh = meter_stop_wh if meter_stop_wh is not None else found.meter_last_wh
            await conn.execute(
                "UPDATE transactions SET stopped_at = ?, meter_stop_wh = ?, meter_last_wh = COALESCE(?, meter_last_wh),"
                " energy_wh = ?, soc_end = COALESCE(?, soc_end), stop_reason = ?, id_tag = COALESCE(id_tag, ?),"
                " updated_at = ? WHERE id = ?",
                (iso(stopped_at), stop_wh, stop_wh, _energy(found.meter_start_wh, stop_wh), soc, reason, id_tag,
                 iso(stopped_at), transaction_id),
            )  # fmt: skip
            closed = await _one(conn, "WHERE id = ?", (transaction_id,))
            assert closed is not None
            await self.site_events.within(conn, "transaction_stopped", closed.as_json())
            return closed

        return await self.db.write(op)

    async def get(self, transaction_id: int) -> Transaction | None:
        return _from_row(await self.db.fetchone(f"SELECT {COLUMNS} FROM transactions WHERE id = ?", (transaction_id,)))

    async def by_ocpp_id(self, charger_id: str, ocpp_id: str) -> Transaction | None:
        """The open session with this charger's transactionId, else the latest closed one."""
        return _from_row(
            await self.db.fetchone(
                f"SELECT {COLUMNS} FROM transactions WHERE charger_id = ? AND ocpp_id = ? "
                "ORDER BY stopped_at IS NULL DESC, id DESC LIMIT 1",
                (charger_id, ocpp_id),
            )
        )

    async def open_for(self, charger_id: str) -> list[Transaction]:
        rows = await self.db.fetchall(
            f"SELECT {COLUMNS} FROM transactions WHERE charger_id = ? AND stopped_at IS NULL ORDER BY id", (charger_id,)
        )
        return [_from_row(r) for r in rows]  # type: ignore[misc]

    async def open_all(self) -> list[Transaction]:
        """Every session still running on the site."""
        rows = await self.db.fetchall(f"SELECT {COLUMNS} FROM transactions WHERE stopped_at IS NULL ORDER BY id")
        return [_from_row(r) for r in rows]  # type: ignore[misc]

    async def samples(self, transaction_id: int, limit: int = 20000) -> list[tuple[str, str]]:
        """A session's meter values as (ts, sampled values as the stored JSON text), oldest first."""
        rows = await self.db.fetchall(
            "SELECT ts, sampled_value FROM meter_values WHERE transaction_id = ? ORDER BY ts, id LIMIT ?",
            (transaction_id, limit),
        )
        return [(r["ts"], r["sampled_value"]) for r in rows]

    async def stop_reasons(self) -> list[str]:
        """The reasons sessions of this site ended for."""
        rows = await self.db.fetchall("SELECT DISTINCT stop_reason FROM transactions WHERE stop_reason IS NOT NULL")
        return sorted(r["stop_reason"] for r in rows)

    async def query(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        charger_id: str | None = None,
        id_tag: str | None = None,
        limit: int = 10000,
    ) -> list[Transaction]:
        """Sessions that started in [since, until), newest first."""
        return await self.page(Filters(since, until, charger_id, id_tag), limit=limit)

    async def page(self, filters: Filters, sort: str = "started_at", descending: bool = True, offset: int = 0,
                   limit: int = 100) -> list[Transaction]:  # fmt: skip
        """One page of the sessions that pass the filters, in the order asked for (an index walk: cheap at any
        depth of a history of 100k sessions, never all of them in memory)."""
        sql, params = filters.select(COLUMNS, sort, descending)
        rows = await self.db.fetchall(f"{sql} LIMIT ? OFFSET ?", (*params, limit, offset))
        return [_from_row(r) for r in rows]  # type: ignore[misc]

    async def meter_value_rows(
        self, charger_id: str, since: datetime | None = None, until: datetime | None = None, limit: int = 10000
    ) -> list[tuple[int, int | None, str, str]]:
        """(evse, transaction id, ts, sampled values as the stored JSON text), oldest first."""
        clause, params = where(("charger_id = ?", charger_id), ("ts >= ?", since and iso(since)),
                               ("ts < ?", until and iso(until)))  # fmt: skip
        rows = await self.db.fetchall(
            f"SELECT evse, transaction_id, ts, sampled_value FROM meter_values {clause} ORDER BY ts, id LIMIT ?",
            (*params, limit),
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    async def meter_values(
        self, charger_id: str, since: datetime | None = None, until: datetime | None = None, limit: int = 10000
    ) -> list[dict[str, Any]]:
        return [
            {"evse": evse, "transaction_id": tx, "timestamp": ts, "sampled_value": json.loads(text)}
            for evse, tx, ts, text in await self.meter_value_rows(charger_id, since, until, limit)
        ]

    async def prune_meter_values(self, before: datetime, batch: int = 5000) -> int:
        """Delete meter values older than `before`, in small commits so the writer never stalls for long."""
        removed = 0
        while True:
            n = await self.db.write(_delete_batch(iso(before), batch))
            removed += n
            if n < batch:
                return removed


def _digest(text: str) -> int:
    """64 bits of the sampled values, for spotting a meter value received twice."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def _delete_batch(before: str, batch: int):
    async def op(conn: aiosqlite.Connection) -> int:
        cursor = await conn.execute(
            "DELETE FROM meter_values WHERE id IN (SELECT id FROM meter_values WHERE ts < ? LIMIT ?)", (before, batch)
        )
        return cursor.rowcount

    return op


async def _advance(conn: aiosqlite.Connection, transaction_id: int, samples: list[Sample]) -> None:
    energy = [s.energy_wh for s in samples if s.energy_wh is not None]
    socs = [s.soc for s in samples if s.soc is not None]
    if not energy and not socs:
        return
    last_wh = max(energy) if energy else None
    await conn.execute(
        "UPDATE transactions SET meter_start_wh = COALESCE(meter_start_wh, ?), meter_last_wh = COALESCE(?, meter_last_wh),"
        " soc_start = COALESCE(soc_start, ?), soc_end = COALESCE(?, soc_end), updated_at = ? WHERE id = ? AND "
        "stopped_at IS NULL",
        (min(energy) if energy else None, last_wh, socs[0] if socs else None, socs[-1] if socs else None,
         iso(samples[-1].ts), transaction_id),
    )  # fmt: skip


async def _close_superseded(conn: aiosqlite.Connection, charger_id: str, evse: int, now: str) -> list[Transaction]:
    """One EVSE runs one session: an older one still open here was lost by the charger (a reboot, say)."""
    cursor = await conn.execute(
        "SELECT id FROM transactions WHERE charger_id = ? AND evse = ? AND stopped_at IS NULL", (charger_id, evse)
    )
    closed = []
    for (stale_id,) in await cursor.fetchall():
        log.warning("closing superseded transaction charger=%s evse=%s id=%s", charger_id, evse, stale_id)
        await conn.execute(
            "UPDATE transactions SET stopped_at = ?, meter_stop_wh = meter_last_wh, "
            "energy_wh = ROUND(meter_last_wh - meter_start_wh, 3), stop_reason = 'Superseded', updated_at = ? WHERE id = ?",
            (now, now, stale_id),
        )
        closed.append(await _one(conn, "WHERE id = ?", (stale_id,)))
    return closed


async def _one(conn: aiosqlite.Connection, where: str, params: tuple) -> Transaction | None:
    cursor = await conn.execute(f"SELECT {COLUMNS} FROM transactions {where}", params)
    return _from_row(await cursor.fetchone())


def _from_row(row: Any) -> Transaction | None:
    return None if row is None else Transaction(*row)
