"""What the gateway knows about chargers between connections: boot info, presence, status, refused ids."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import aiosqlite

from gateway.clock import iso
from gateway.store.db import Database
from gateway.store.events import Events


MAX_PENDING = 1000  # refused ids listed at most


class Chargers:
    def __init__(self, db: Database, events: Events) -> None:
        self.db = db
        self.site_events = events

    async def connected(self, charger_id: str, ocpp_version: str, at: datetime) -> None:
        async def op(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO chargers (id, ocpp_version, first_seen, last_connected) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET ocpp_version = excluded.ocpp_version, "
                "last_connected = excluded.last_connected",
                (charger_id, ocpp_version, iso(at), iso(at)),
            )
            # An accepted id is no longer waiting for a technician.
            await conn.execute("DELETE FROM pending_chargers WHERE id = ?", (charger_id,))
            await self.site_events.within(conn, "charger_online", {"charger": charger_id, "ocpp_version": ocpp_version},
                                          at)  # fmt: skip

        await self.db.write(op)

    async def disconnected(self, charger_id: str, at: datetime) -> None:
        async def op(conn: aiosqlite.Connection) -> None:
            await conn.execute("UPDATE chargers SET last_disconnected = ? WHERE id = ?", (iso(at), charger_id))
            await self.site_events.within(conn, "charger_offline", {"charger": charger_id}, at)

        await self.db.write(op)

    async def booted(self, charger_id: str, at: datetime, vendor: str, model: str, serial: str | None,
                     firmware: str | None) -> None:  # fmt: skip
        await self.db.execute(
            "UPDATE chargers SET vendor = ?, model = ?, serial = ?, firmware = ?, last_boot = ? WHERE id = ?",
            (vendor, model, serial, firmware, iso(at), charger_id),
        )

    async def status(self, charger_id: str, evse: int, connector: int, status: str, error_code: str | None,
                     info: str | None, at: datetime, vendor_error_code: str | None = None) -> None:  # fmt: skip
        """The latest status of a connector; a change (status or error code) is an event."""

        async def op(conn: aiosqlite.Connection) -> None:
            cursor = await conn.execute(
                "SELECT status, error_code FROM connector_status WHERE charger_id = ? AND evse = ? AND connector = ?",
                (charger_id, evse, connector),
            )
            before = await cursor.fetchone()
            await conn.execute(
                "INSERT INTO connector_status (charger_id, evse, connector, status, error_code, info, ts, "
                "vendor_error_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (charger_id, evse, connector) DO UPDATE "
                "SET status = excluded.status, error_code = excluded.error_code, info = excluded.info, ts = excluded.ts, "
                "vendor_error_code = excluded.vendor_error_code",
                (charger_id, evse, connector, status, error_code, info, iso(at), vendor_error_code),
            )
            if before is None or tuple(before) != (status, error_code):
                payload = {"charger": charger_id, "evse": evse, "connector": connector, "status": status,
                           "error_code": error_code, "info": info}  # fmt: skip
                if vendor_error_code:
                    payload["vendor_error_code"] = vendor_error_code
                await self.site_events.within(conn, "status", payload, at)

        await self.db.write(op)

    async def event(self, charger_id: str, action: str, payload: dict[str, Any], at: datetime) -> None:
        """A report the charger sent that is not about a session (NotifyEvent, DataTransfer, ...), as received."""
        await self.db.execute(
            "INSERT INTO charger_events (charger_id, ts, action, payload) VALUES (?, ?, ?, ?)",
            (charger_id, iso(at), action, json.dumps(payload)),
        )

    async def events(self, charger_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT ts, action, payload FROM charger_events WHERE charger_id = ? ORDER BY id DESC LIMIT ?",
            (charger_id, limit),
        )
        return [{"ts": r["ts"], "action": r["action"], "payload": json.loads(r["payload"])} for r in rows]

    async def refused(self, charger_id: str, remote: str | None, at: datetime) -> None:
        """An unknown id knocked: list it for a technician. Ids come from the network, so the list is bounded:
        when it is full, the id heard from longest ago makes room (junk stops crowding out a real charger)."""

        async def op(conn: aiosqlite.Connection) -> None:
            cursor = await conn.execute(
                "UPDATE pending_chargers SET remote = ?, last_seen = ?, attempts = attempts + 1 WHERE id = ?",
                (remote, iso(at), charger_id),
            )
            if cursor.rowcount == 0:
                await conn.execute(
                    "DELETE FROM pending_chargers WHERE id IN (SELECT id FROM pending_chargers ORDER BY last_seen "
                    "LIMIT max(0, (SELECT count(*) FROM pending_chargers) - ? + 1))",
                    (MAX_PENDING,),
                )
                await conn.execute(
                    "INSERT INTO pending_chargers (id, remote, first_seen, last_seen) VALUES (?, ?, ?, ?)",
                    (charger_id, remote, iso(at), iso(at)),
                )

        await self.db.write(op)

    async def pending(self) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT id, remote, first_seen, last_seen, attempts FROM pending_chargers ORDER BY last_seen DESC"
        )
        return [dict(r) for r in rows]

    async def info(self, charger_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Boot info and presence per charger id."""
        sql = "SELECT id, vendor, model, serial, firmware, ocpp_version, first_seen, last_boot, last_connected, " \
              "last_disconnected FROM chargers"  # fmt: skip
        rows = await (self.db.fetchall(sql + " WHERE id = ?", (charger_id,)) if charger_id else self.db.fetchall(sql))
        return {r["id"]: dict(r) for r in rows}

    async def statuses(self, charger_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT charger_id, evse, connector, status, error_code, info, vendor_error_code, ts FROM connector_status"
        if charger_id:
            return [dict(r) for r in await self.db.fetchall(sql + " WHERE charger_id = ?", (charger_id,))]
        return [dict(r) for r in await self.db.fetchall(sql)]
