"""Badges: the site's list, the local list each charger holds (as the gateway sent it), the authorization
cache, and the reservations chargers accepted."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import aiosqlite

from gateway.authorization import Badge, Decision, decide
from gateway.clock import iso, parse_iso
from gateway.store.db import Database, where
from gateway.store.events import Events

MAX_LIST = 100_000  # entries in one charger's local list; more is an attack, not a site


class Badges:
    def __init__(self, db: Database, events: Events) -> None:
        self.db = db
        self.site_events = events
        self._reservation_ids: itertools.count[int] | None = None

    # -- the site's list ---------------------------------------------------------------------------------

    async def put(self, badge: Badge, note: str | None, at: datetime) -> None:
        await self.db.execute(
            "INSERT INTO badges (id_tag, status, expiry, parent_id_tag, note, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id_tag) DO UPDATE SET status = excluded.status, expiry = excluded.expiry, "
            "parent_id_tag = excluded.parent_id_tag, note = excluded.note, updated_at = excluded.updated_at",
            (badge.id_tag, badge.status, _iso(badge.expiry), badge.parent, note, iso(at)),
        )

    async def remove(self, id_tag: str) -> bool:
        return bool(await self._delete("DELETE FROM badges WHERE id_tag = ?", (id_tag,)))

    async def _delete(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Rows removed."""

        async def op(conn: aiosqlite.Connection) -> int:
            return (await conn.execute(sql, params)).rowcount

        return await self.db.write(op)

    async def site_list(self, limit: int = 10000, after: str | None = None) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT id_tag, status, expiry, parent_id_tag, note, updated_at FROM badges WHERE id_tag > ? "
            "ORDER BY id_tag LIMIT ?",
            (after or "", limit),
        )
        return [dict(r) for r in rows]

    async def site_badges(self) -> list[Badge]:
        rows = await self.db.fetchall("SELECT id_tag, status, expiry, parent_id_tag FROM badges ORDER BY id_tag")
        return [_badge(r) for r in rows]

    # -- deciding ----------------------------------------------------------------------------------------

    async def authorize(self, charger_id: str, id_tag: str, now: datetime, accept_unknown: bool,
                        remember: bool = True) -> Decision:  # fmt: skip
        """The answer to a badge presented at a charger; remembered in the cache."""
        site = await self._one("SELECT id_tag, status, expiry, parent_id_tag FROM badges WHERE id_tag = ?", (id_tag,))
        local = await self._one(
            "SELECT id_tag, status, expiry, parent_id_tag FROM local_list_entries WHERE charger_id = ? AND id_tag = ?",
            (charger_id, id_tag),
        )
        parent = (site or local).parent if (site or local) else None
        group = None
        if parent is not None and parent != id_tag:
            group = await self._one("SELECT id_tag, status, expiry, parent_id_tag FROM badges WHERE id_tag = ?",
                                    (parent,))  # fmt: skip
        decision = decide(now, site, local, group, accept_unknown)
        if remember:
            await self.db.execute(
                "INSERT INTO auth_cache (id_tag, status, expiry, parent_id_tag, source, charger_id, answered_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id_tag) DO UPDATE SET status = excluded.status, "
                "expiry = excluded.expiry, parent_id_tag = excluded.parent_id_tag, source = excluded.source, "
                "charger_id = excluded.charger_id, answered_at = excluded.answered_at",
                (id_tag, decision.status, _iso(decision.expiry), decision.parent, decision.source, charger_id,
                 iso(now)),
            )  # fmt: skip
        return decision

    async def _one(self, sql: str, params: tuple[Any, ...]) -> Badge | None:
        row = await self.db.fetchone(sql, params)
        return None if row is None else _badge(row)

    # -- the authorization cache -------------------------------------------------------------------------

    async def cache(self, limit: int = 10000) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT id_tag, status, expiry, parent_id_tag, source, charger_id, answered_at FROM auth_cache "
            "ORDER BY answered_at DESC LIMIT ?",
            (limit,),
        )
        return [dict(r) for r in rows]

    async def clear_cache(self) -> int:
        return await self._delete("DELETE FROM auth_cache")

    async def prune_cache(self, before: datetime) -> int:
        return await self._delete("DELETE FROM auth_cache WHERE answered_at < ?", (iso(before),))

    # -- the local list each charger holds ---------------------------------------------------------------

    async def local_list_sent(self, charger_id: str, version: int, full: bool, entries: list[Badge],
                              removed: list[str], at: datetime) -> None:  # fmt: skip
        """A SendLocalList the charger accepted: a full list replaces, a differential one updates."""

        async def op(conn: aiosqlite.Connection) -> None:
            if full:
                await conn.execute("DELETE FROM local_list_entries WHERE charger_id = ?", (charger_id,))
            if removed:
                await conn.executemany("DELETE FROM local_list_entries WHERE charger_id = ? AND id_tag = ?",
                                       [(charger_id, t) for t in removed])  # fmt: skip
            await conn.executemany(
                "INSERT INTO local_list_entries (charger_id, id_tag, status, expiry, parent_id_tag) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (charger_id, id_tag) DO UPDATE SET status = excluded.status, "
                "expiry = excluded.expiry, parent_id_tag = excluded.parent_id_tag",
                [(charger_id, b.id_tag, b.status, _iso(b.expiry), b.parent) for b in entries],
            )
            await conn.execute(
                "INSERT INTO local_lists (charger_id, version, updated_at) VALUES (?, ?, ?) ON CONFLICT (charger_id) "
                "DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
                (charger_id, version, iso(at)),
            )

        await self.db.write(op)

    async def local_list(self, charger_id: str) -> dict[str, Any]:
        head = await self.db.fetchone("SELECT version, updated_at FROM local_lists WHERE charger_id = ?", (charger_id,))
        rows = await self.db.fetchall(
            "SELECT id_tag, status, expiry, parent_id_tag FROM local_list_entries WHERE charger_id = ? "
            "ORDER BY id_tag LIMIT ?",
            (charger_id, MAX_LIST),
        )
        return {
            "version": head["version"] if head else 0,
            "updated_at": head["updated_at"] if head else None,
            "entries": [dict(r) for r in rows],
        }

    # -- reservations ------------------------------------------------------------------------------------

    async def next_reservation_id(self) -> int:
        """An OCPP reservation id no charger of this site has had from us."""
        if self._reservation_ids is None:
            row = await self.db.fetchone("SELECT COALESCE(MAX(reservation_id), 0) AS top FROM reservations")
            self._reservation_ids = itertools.count(int(row["top"]) + 1 if row else 1)
        return next(self._reservation_ids)

    async def reserved(self, charger_id: str, reservation_id: int, evse: int | None, id_tag: str,
                       parent: str | None, expiry: datetime, at: datetime) -> None:  # fmt: skip
        """A reservation the charger accepted (a new one with the same id replaces the old one)."""

        async def op(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO reservations (reservation_id, charger_id, evse, id_tag, parent_id_tag, expiry, status, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, 'active', ?) ON CONFLICT (charger_id, reservation_id) DO "
                "UPDATE SET evse = excluded.evse, id_tag = excluded.id_tag, parent_id_tag = excluded.parent_id_tag, "
                "expiry = excluded.expiry, status = 'active', created_at = excluded.created_at, ended_at = NULL, "
                "transaction_id = NULL",
                (reservation_id, charger_id, evse, id_tag, parent, iso(expiry), iso(at)),
            )
            await self.site_events.within(conn, "reservation_made", {
                "charger": charger_id, "reservation_id": reservation_id, "evse": evse, "expiry": iso(expiry)}, at)  # fmt: skip

        await self.db.write(op)

    async def reservation_ended(self, charger_id: str, reservation_id: int, status: str, at: datetime,
                                transaction_id: int | None = None) -> dict[str, Any] | None:  # fmt: skip
        """An active reservation is used, cancelled, expired or removed; None when there was none active."""

        async def op(conn: aiosqlite.Connection) -> dict[str, Any] | None:
            cursor = await conn.execute(
                "UPDATE reservations SET status = ?, ended_at = ?, transaction_id = ? WHERE charger_id = ? AND "
                "reservation_id = ? AND status = 'active' RETURNING reservation_id, evse, id_tag",
                (status, iso(at), transaction_id, charger_id, reservation_id),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            ended = {"charger": charger_id, "reservation_id": reservation_id, "evse": row[1], "status": status}
            await self.site_events.within(conn, "reservation_ended", ended, at)
            return ended

        return await self.db.write(op)

    async def reservations(self, charger_id: str | None = None, active_at: datetime | None = None,
                           limit: int = 1000) -> list[dict[str, Any]]:  # fmt: skip
        """Newest first; with ``active_at``, only those active and not expired at that time."""
        clause, params = where(("charger_id = ?", charger_id),
                               ("status = 'active' AND expiry > ?", active_at and iso(active_at)))  # fmt: skip
        rows = await self.db.fetchall(
            "SELECT reservation_id, charger_id, evse, id_tag, parent_id_tag, expiry, status, created_at, ended_at, "
            f"transaction_id FROM reservations {clause} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [dict(r) for r in rows]

    async def expire_reservations(self, now: datetime) -> list[dict[str, Any]]:
        """Active reservations past their expiry become expired; returns them."""
        due = await self.db.fetchall(
            "SELECT charger_id, reservation_id FROM reservations WHERE status = 'active' AND expiry <= ?", (iso(now),)
        )
        ended = [await self.reservation_ended(r["charger_id"], r["reservation_id"], "expired", now) for r in due]
        return [e for e in ended if e is not None]


def _badge(row: Any) -> Badge:
    expiry = row["expiry"]
    return Badge(row["id_tag"], row["status"], parse_iso(expiry) if expiry else None, row["parent_id_tag"])


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else iso(ts)
