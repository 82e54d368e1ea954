"""What the load cap is told from outside, kept across restarts: external site limits (a DSO's, a BMS's, an
operator's: one per source, with an optional expiry), operators' limits per EVSE, and the mode. Each change is
written with an event in the same transaction (kind ``site_limit``, ``manual_limit`` or ``mode``); who made it is
in the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from gateway.clock import iso, parse_iso
from gateway.store.db import Database
from gateway.store.events import Events


@dataclass(frozen=True)
class ExternalLimit:
    limit_w: float
    expires_at: datetime | None  # None: until lifted
    set_at: datetime

    def as_json(self) -> dict[str, object]:
        return {"limit_w": self.limit_w, "expires_at": iso(self.expires_at) if self.expires_at else None,
                "set_at": iso(self.set_at)}  # fmt: skip


@dataclass(frozen=True)
class Kept:
    external: dict[str, ExternalLimit]  # source -> limit
    manual: dict[str, float]  # "CP01/1" -> W
    mode: str | None  # None: never set, the config's holds


class SiteLimits:
    def __init__(self, db: Database, events: Events) -> None:
        self.db = db
        self.events = events

    async def load(self) -> Kept:
        external = {r["source"]: ExternalLimit(r["limit_w"], parse_iso(r["expires_at"]) if r["expires_at"] else None,
                                               parse_iso(r["set_at"]))
                    for r in await self.db.fetchall("SELECT * FROM external_limits")}  # fmt: skip
        manual = {f"{r['charger_id']}/{r['evse']}": r["limit_w"]
                  for r in await self.db.fetchall("SELECT * FROM manual_limits")}  # fmt: skip
        mode = await self.db.fetchone("SELECT mode FROM loadcap_mode")
        return Kept(external, manual, mode["mode"] if mode else None)

    async def set_external(self, source: str, limit: ExternalLimit | None, why: str = "set") -> None:
        """Set (or lift, `limit` None) one source's limit; `why`: set, lifted or lapsed, for the event."""

        async def op(conn: aiosqlite.Connection) -> None:
            if limit is None:
                await conn.execute("DELETE FROM external_limits WHERE source = ?", (source,))
            else:
                await conn.execute(
                    "INSERT OR REPLACE INTO external_limits (source, limit_w, expires_at, set_at) VALUES (?, ?, ?, ?)",
                    (source, limit.limit_w, iso(limit.expires_at) if limit.expires_at else None, iso(limit.set_at)))
            payload = {"source": source, "change": why, **(limit.as_json() if limit else {"limit_w": None})}
            await self.events.within(conn, "site_limit", payload)

        await self.db.write(op)

    async def set_manual(self, key: str, limit_w: float | None, at: datetime) -> None:
        charger_id, _, evse = key.partition("/")

        async def op(conn: aiosqlite.Connection) -> None:
            if limit_w is None:
                await conn.execute("DELETE FROM manual_limits WHERE charger_id = ? AND evse = ?", (charger_id, evse))
            else:
                await conn.execute("INSERT OR REPLACE INTO manual_limits VALUES (?, ?, ?, ?)",
                                   (charger_id, int(evse), limit_w, iso(at)))  # fmt: skip
            await self.events.within(conn, "manual_limit", {"evse": key, "limit_w": limit_w}, at)

        await self.db.write(op)

    async def set_mode(self, mode: str, at: datetime) -> None:
        async def op(conn: aiosqlite.Connection) -> None:
            await conn.execute("INSERT OR REPLACE INTO loadcap_mode VALUES (1, ?, ?)", (mode, iso(at)))
            await self.events.within(conn, "mode", {"mode": mode}, at)

        await self.db.write(op)
