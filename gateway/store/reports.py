"""What chargers report about themselves: the 2.0.1 device model, variable monitors, display messages, customer
information (all of them reports that may come in parts), and the security events of both versions.

Everything here comes from a charger, so what one charger can make us keep is bounded; what does not fit is
dropped (and counted on its report), never an error the charger would see:
- MAX_ATTRIBUTES device model attributes per charger (a full 2.0.1 station reports a few hundred to two
  thousand): new ones beyond it are dropped, known ones are still updated;
- MAX_MONITORS monitors and MAX_DISPLAY_MESSAGES display messages per charger, likewise;
- MAX_REPORTS reports per charger (all kinds together): the one updated longest ago goes first, with its
  customer information;
- MAX_CUSTOMER_PARTS parts of one customer information report (512 characters each);
- MAX_SECURITY_EVENTS security events per charger: the oldest go first.

A report that covers everything of its kind (a FullInventory, an unfiltered monitoring or display message
report) replaces what was stored: once it is complete, rows it did not refresh are removed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from gateway.clock import iso, utcnow
from gateway.store.db import Database
from gateway.store.events import Events

MAX_ATTRIBUTES = 5000
MAX_MONITORS = 1000
MAX_DISPLAY_MESSAGES = 200
MAX_REPORTS = 100
MAX_CUSTOMER_PARTS = 200
MAX_SECURITY_EVENTS = 1000

DEVICE_MODEL, MONITORING, DISPLAY_MESSAGES, CUSTOMER_INFORMATION = (
    "device_model", "monitoring", "display_messages", "customer_information")  # fmt: skip
# Which table holds what each kind of report tells (customer information is kept per report, never replaced).
_TABLE = {DEVICE_MODEL: "device_model", MONITORING: "monitors", DISPLAY_MESSAGES: "display_messages"}
_PLACE = "component, component_instance, evse, connector, variable, variable_instance"
# Store a charger's items at a time: (conn, charger_id, items, now) -> how many new ones did not fit.
Upsert = Callable[[aiosqlite.Connection, str, list[Any], str], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Place:
    """A variable of a component: names, instances ('' when absent), EVSE and connector (0 when absent)."""

    component: str
    variable: str
    component_instance: str = ""
    evse: int = 0
    connector: int = 0
    variable_instance: str = ""

    @classmethod
    def of(cls, component: dict[str, Any], variable: dict[str, Any]) -> Place:
        """From the spec's ComponentType and VariableType, camelCase as on the wire."""
        evse = component.get("evse") or {}
        return cls(component["name"], variable["name"], component.get("instance") or "", evse.get("id") or 0,
                   evse.get("connectorId") or 0, variable.get("instance") or "")  # fmt: skip

    def key(self) -> tuple[str, str, int, int, str, str]:
        return (self.component, self.component_instance, self.evse, self.connector, self.variable,
                self.variable_instance)  # fmt: skip


def _component(row: Any) -> dict[str, Any]:
    """The spec's ComponentType of a row, as a GetVariables request would name it."""
    out: dict[str, Any] = {"name": row["component"]}
    if row["component_instance"]:
        out["instance"] = row["component_instance"]
    if row["evse"]:
        out["evse"] = {"id": row["evse"], **({"connectorId": row["connector"]} if row["connector"] else {})}
    return out


def _variable(row: Any) -> dict[str, Any]:
    return {"name": row["variable"], **({"instance": row["variable_instance"]} if row["variable_instance"] else {})}


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute of a variable, with what the charger said about it (None: not said)."""

    place: Place
    type: str = "Actual"
    value: str | None = None
    mutability: str | None = None
    persistent: bool | None = None
    constant: bool | None = None
    characteristics: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Monitor:
    id: int
    place: Place
    type: str
    severity: int
    value: float
    transaction: bool = False


@dataclass(frozen=True, slots=True)
class Part:
    """One message of a report: seq_no None for a kind that numbers no parts (display messages)."""

    request_id: int
    seq_no: int | None
    tbc: bool
    generated_at: datetime | None = None


class Reports:
    def __init__(self, db: Database, events: Events) -> None:
        self.db = db
        self.site_events = events
        self._last = ""

    def _now(self) -> str:
        """The time of a write, never before the last one's (a clock stepping back must not make a report's own
        rows look older than the report, which would have them replaced)."""
        self._last = max(self._last, iso(utcnow()))
        return self._last

    # -- reports in parts ----------------------------------------------------------------------------------

    async def asked(self, charger_id: str, kind: str, request_id: int, asked: str, status: str, *,
                    whole: bool = False, empty: bool = False) -> None:  # fmt: skip
        """The charger answered a request for a report: what was asked, its status; empty: nothing will come
        (EmptyResultSet), so the report is complete as it is. Its parts may have come before this answer is
        kept: what they counted stays (unless it is empty, an answer that ends a report of its own)."""

        async def op(conn: aiosqlite.Connection) -> None:
            now = self._now()
            await conn.execute(
                "INSERT INTO reports (charger_id, kind, request_id, asked, status, whole, complete, started_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (charger_id, kind, request_id) DO UPDATE "
                "SET asked = excluded.asked, status = excluded.status, whole = excluded.whole, "
                "complete = max(complete, excluded.complete), updated_at = excluded.updated_at, "
                "parts = iif(excluded.complete, 0, parts), items = iif(excluded.complete, 0, items), "
                "dropped = iif(excluded.complete, 0, dropped), "
                "started_at = iif(excluded.complete, excluded.started_at, started_at)",
                (charger_id, kind, request_id, asked, status, whole, empty, now, now),
            )
            await self._replace_when_whole(conn, charger_id, kind, request_id)
            await self._bound_reports(conn, charger_id)

        await self.db.write(op)

    async def _begin(self, conn: aiosqlite.Connection, charger_id: str, kind: str, part: Part, now: str) -> None:
        """The first part (seqNo 0; any part, for a kind without seqNo) of a report already complete starts it
        over: its requestId was used again."""
        if part.seq_no not in (None, 0):
            return
        cursor = await conn.execute(
            "UPDATE reports SET parts = 0, last_seq_no = NULL, final_seq_no = NULL, complete = 0, items = 0, "
            "dropped = 0, generated_at = NULL, started_at = ? WHERE charger_id = ? AND kind = ? AND request_id = ? "
            "AND complete",
            (now, charger_id, kind, part.request_id),
        )
        if cursor.rowcount and kind == CUSTOMER_INFORMATION:
            await conn.execute("DELETE FROM customer_information WHERE charger_id = ? AND request_id = ?",
                               (charger_id, part.request_id))  # fmt: skip

    async def _part(self, conn: aiosqlite.Connection, charger_id: str, kind: str, part: Part, stored: int,
                    dropped: int, now: str) -> None:  # fmt: skip
        """Count one part on its report (made when it is the first news of it), then, once a whole report is
        complete, drop what it did not refresh. `now`: the time its rows were written."""
        cursor = await conn.execute(
            "SELECT parts, last_seq_no FROM reports WHERE charger_id = ? AND kind = ? AND request_id = ?",
            (charger_id, kind, part.request_id),
        )
        row = await cursor.fetchone()
        parts, last = (0, None) if row is None else (row[0], row[1])
        seq_no = parts if part.seq_no is None else part.seq_no
        repeat = row is not None and last == seq_no  # the same part again (its answer was lost)
        parts += 0 if repeat else 1
        generated = iso(part.generated_at) if part.generated_at else None
        await conn.execute(
            "INSERT INTO reports (charger_id, kind, request_id, parts, last_seq_no, final_seq_no, items, dropped, "
            "generated_at, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (charger_id, kind, request_id) DO UPDATE SET parts = excluded.parts, "
            "last_seq_no = excluded.last_seq_no, final_seq_no = coalesce(excluded.final_seq_no, final_seq_no), "
            "items = items + excluded.items, dropped = dropped + excluded.dropped, "
            "generated_at = coalesce(generated_at, excluded.generated_at), updated_at = excluded.updated_at",
            (charger_id, kind, part.request_id, parts, seq_no, None if part.tbc else seq_no, stored, dropped,
             generated, now, now),
        )  # fmt: skip
        await conn.execute(
            "UPDATE reports SET complete = 1 WHERE charger_id = ? AND kind = ? AND request_id = ? "
            "AND final_seq_no IS NOT NULL AND parts > final_seq_no",
            (charger_id, kind, part.request_id),
        )
        await self._replace_when_whole(conn, charger_id, kind, part.request_id)
        if row is None:
            await self._bound_reports(conn, charger_id)

    async def _replace_when_whole(self, conn: aiosqlite.Connection, charger_id: str, kind: str,
                                  request_id: int) -> None:  # fmt: skip
        cursor = await conn.execute(
            "SELECT started_at FROM reports WHERE charger_id = ? AND kind = ? AND request_id = ? "
            "AND whole AND complete",
            (charger_id, kind, request_id),
        )
        row = await cursor.fetchone()
        if row is not None and kind in _TABLE:
            await conn.execute(f"DELETE FROM {_TABLE[kind]} WHERE charger_id = ? AND updated_at < ?",
                               (charger_id, row[0]))  # fmt: skip

    async def _bound_reports(self, conn: aiosqlite.Connection, charger_id: str) -> None:
        await conn.execute(
            "DELETE FROM reports WHERE rowid IN (SELECT rowid FROM reports WHERE charger_id = ? "
            "ORDER BY updated_at DESC LIMIT -1 OFFSET ?)",
            (charger_id, MAX_REPORTS),
        )
        await conn.execute(
            "DELETE FROM customer_information WHERE charger_id = ? AND request_id NOT IN "
            "(SELECT request_id FROM reports WHERE charger_id = ? AND kind = ?)",
            (charger_id, charger_id, CUSTOMER_INFORMATION),
        )

    # -- the device model -----------------------------------------------------------------------------------

    async def _reported(self, charger_id: str, kind: str, part: Part, items: list[Any], upsert: Upsert) -> int:
        """One part of a report: its items stored, the part counted; returns how many new items did not fit."""

        async def op(conn: aiosqlite.Connection) -> int:
            now = self._now()
            await self._begin(conn, charger_id, kind, part, now)
            dropped = await upsert(conn, charger_id, items, now)
            await self._part(conn, charger_id, kind, part, len(items) - dropped, dropped, now)
            return dropped

        return await self.db.write(op)

    async def _agreed(self, charger_id: str, items: list[Any], upsert: Upsert) -> int:
        """What the charger accepted from the gateway; returns how many new items did not fit."""

        async def op(conn: aiosqlite.Connection) -> int:
            return await upsert(conn, charger_id, items, self._now())

        return await self.db.write(op)

    async def device_model_part(self, charger_id: str, part: Part, attributes: list[Attribute]) -> int:
        """A NotifyReport; returns how many new attributes did not fit."""
        return await self._reported(charger_id, DEVICE_MODEL, part, attributes, self._upsert_attributes)

    async def set_attributes(self, charger_id: str, attributes: list[Attribute]) -> int:
        """Values the charger confirmed (SetVariables, GetVariables); what it said before about them stays."""
        return await self._agreed(charger_id, attributes, self._upsert_attributes)

    async def _upsert_attributes(self, conn: aiosqlite.Connection, charger_id: str, attributes: list[Attribute],
                                 now: str) -> int:  # fmt: skip
        await conn.executemany(
            f"INSERT INTO device_model (charger_id, {_PLACE}, attribute, value, mutability, persistent, constant, "
            "characteristics, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (charger_id, {_PLACE}, attribute) DO UPDATE SET value = excluded.value, "
            "mutability = coalesce(excluded.mutability, mutability), "
            "persistent = coalesce(excluded.persistent, persistent), constant = coalesce(excluded.constant, constant), "
            "characteristics = coalesce(excluded.characteristics, characteristics), updated_at = excluded.updated_at",
            [(charger_id, *a.place.key(), a.type, a.value, a.mutability, a.persistent, a.constant,
              None if a.characteristics is None else json.dumps(a.characteristics), now) for a in attributes],
        )  # fmt: skip
        return await _bound(conn, "device_model", charger_id, MAX_ATTRIBUTES)

    async def device_model(self, charger_id: str, component: str | None = None,
                           variable: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Components with their variables, each with its characteristics and attributes; names match
        without regard to case."""
        clauses, params = ["charger_id = ?"], [charger_id]
        for column, wanted in (("component", component), ("variable", variable)):
            if wanted:
                clauses.append(f"{column} = ? COLLATE NOCASE")
                params.append(wanted)
        rows = await self.db.fetchall(
            f"SELECT {_PLACE}, attribute, value, mutability, persistent, constant, characteristics, updated_at "
            f"FROM device_model WHERE {' AND '.join(clauses)} ORDER BY {_PLACE}, attribute",
            params,
        )
        components: list[dict[str, Any]] = []
        last_component = last_variable = None
        for r in rows:  # in key order: a new component or variable starts where the last one's rows end
            if (r["component"], r["component_instance"], r["evse"], r["connector"]) != last_component:
                last_component = (r["component"], r["component_instance"], r["evse"], r["connector"])
                last_variable = None
                components.append({"component": _component(r), "variables": []})
            variables = components[-1]["variables"]
            if (r["variable"], r["variable_instance"]) != last_variable:
                last_variable = (r["variable"], r["variable_instance"])
                variables.append({"variable": _variable(r), "characteristics": None, "attributes": []})
            entry = variables[-1]
            if r["characteristics"] is not None:
                entry["characteristics"] = json.loads(r["characteristics"])
            entry["attributes"].append({
                "type": r["attribute"], "value": r["value"], "mutability": r["mutability"],
                "persistent": _flag(r["persistent"]), "constant": _flag(r["constant"]), "updated_at": r["updated_at"],
            })  # fmt: skip
        return components

    async def reports(self, charger_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The reports of a charger, the latest news first."""
        rows = await self.db.fetchall(
            "SELECT kind, request_id, asked, status, whole, parts, complete, items, dropped, generated_at, "
            "started_at, updated_at FROM reports WHERE charger_id = ? AND (? IS NULL OR kind = ?) "
            "ORDER BY updated_at DESC",
            (charger_id, kind, kind),
        )
        return [{**dict(r), "whole": bool(r["whole"]), "complete": bool(r["complete"])} for r in rows]

    # -- monitoring -----------------------------------------------------------------------------------------

    async def monitoring_part(self, charger_id: str, part: Part, monitors: list[Monitor]) -> int:
        """A NotifyMonitoringReport; returns how many new monitors did not fit."""
        return await self._reported(charger_id, MONITORING, part, monitors, self._upsert_monitors)

    async def set_monitors(self, charger_id: str, monitors: list[Monitor]) -> int:
        return await self._agreed(charger_id, monitors, self._upsert_monitors)

    async def _upsert_monitors(self, conn: aiosqlite.Connection, charger_id: str, monitors: list[Monitor],
                               now: str) -> int:  # fmt: skip
        await conn.executemany(
            f"INSERT INTO monitors (charger_id, id, {_PLACE}, type, severity, value, transaction_only, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (charger_id, id) DO UPDATE SET "
            "component = excluded.component, component_instance = excluded.component_instance, evse = excluded.evse, "
            "connector = excluded.connector, variable = excluded.variable, "
            "variable_instance = excluded.variable_instance, type = excluded.type, severity = excluded.severity, "
            "value = excluded.value, transaction_only = excluded.transaction_only, updated_at = excluded.updated_at",
            [(charger_id, m.id, *m.place.key(), m.type, m.severity, m.value, m.transaction, now) for m in monitors],
        )
        return await _bound(conn, "monitors", charger_id, MAX_MONITORS)

    async def clear_monitors(self, charger_id: str, ids: list[int] | None = None) -> None:
        """The monitors the charger no longer has; None: all of them."""
        if ids is None:
            await self.db.execute("DELETE FROM monitors WHERE charger_id = ?", (charger_id,))
            return

        async def op(conn: aiosqlite.Connection) -> None:
            await conn.executemany("DELETE FROM monitors WHERE charger_id = ? AND id = ?",
                                   [(charger_id, n) for n in ids])  # fmt: skip

        await self.db.write(op)

    async def monitoring_settings(self, charger_id: str, *, base: str | None = None, level: int | None = None) -> None:
        await self.db.execute(
            "INSERT INTO monitoring (charger_id, base, level, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (charger_id) DO UPDATE SET base = coalesce(excluded.base, base), "
            "level = coalesce(excluded.level, level), updated_at = excluded.updated_at",
            (charger_id, base, level, self._now()),
        )

    async def monitors(self, charger_id: str) -> dict[str, Any]:
        """The monitoring base and level the charger accepted, and its monitors."""
        settings = await self.db.fetchone("SELECT base, level FROM monitoring WHERE charger_id = ?", (charger_id,))
        rows = await self.db.fetchall(
            f"SELECT id, {_PLACE}, type, severity, value, transaction_only, updated_at FROM monitors "
            "WHERE charger_id = ? ORDER BY id",
            (charger_id,),
        )
        return {
            "base": settings["base"] if settings else None,
            "level": settings["level"] if settings else None,
            "monitors": [{"id": r["id"], "component": _component(r), "variable": _variable(r), "type": r["type"],
                          "severity": r["severity"], "value": r["value"], "transaction": bool(r["transaction_only"]),
                          "updated_at": r["updated_at"]} for r in rows],
        }  # fmt: skip

    # -- display messages -----------------------------------------------------------------------------------

    async def display_messages_part(self, charger_id: str, part: Part, messages: list[dict[str, Any]]) -> int:
        """A NotifyDisplayMessages (MessageInfo objects as received); returns how many new ones did not fit."""
        upsert = functools.partial(self._upsert_messages, request_id=part.request_id)
        return await self._reported(charger_id, DISPLAY_MESSAGES, part, messages, upsert)

    async def set_display_message(self, charger_id: str, message: dict[str, Any]) -> int:
        return await self._agreed(charger_id, [message], self._upsert_messages)

    async def _upsert_messages(self, conn: aiosqlite.Connection, charger_id: str, messages: list[dict[str, Any]],
                               now: str, request_id: int | None = None) -> int:  # fmt: skip
        await conn.executemany(
            "INSERT INTO display_messages (charger_id, id, request_id, info, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (charger_id, id) DO UPDATE SET request_id = excluded.request_id, info = excluded.info, "
            "updated_at = excluded.updated_at",
            [(charger_id, m["id"], request_id, json.dumps(m), now) for m in messages],
        )
        return await _bound(conn, "display_messages", charger_id, MAX_DISPLAY_MESSAGES)

    async def clear_display_message(self, charger_id: str, message_id: int) -> None:
        await self.db.execute("DELETE FROM display_messages WHERE charger_id = ? AND id = ?", (charger_id, message_id))

    async def display_messages(self, charger_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT id, request_id, info, updated_at FROM display_messages WHERE charger_id = ? ORDER BY id",
            (charger_id,),
        )
        return [{"id": r["id"], "request_id": r["request_id"], "message": json.loads(r["info"]),
                 "updated_at": r["updated_at"]} for r in rows]  # fmt: skip

    # -- customer information -------------------------------------------------------------------------------

    async def customer_information_part(self, charger_id: str, part: Part, data: str) -> bool:
        """A NotifyCustomerInformation; False when its report already holds MAX_CUSTOMER_PARTS parts."""

        async def op(conn: aiosqlite.Connection) -> bool:
            now = self._now()
            await self._begin(conn, charger_id, CUSTOMER_INFORMATION, part, now)
            cursor = await conn.execute(
                "SELECT count(*) FROM customer_information WHERE charger_id = ? AND request_id = ? AND seq_no != ?",
                (charger_id, part.request_id, part.seq_no),
            )
            fits = (await cursor.fetchone())[0] < MAX_CUSTOMER_PARTS
            if fits:
                await conn.execute(
                    "INSERT OR REPLACE INTO customer_information (charger_id, request_id, seq_no, data) "
                    "VALUES (?, ?, ?, ?)",
                    (charger_id, part.request_id, part.seq_no, data),
                )
            await self._part(conn, charger_id, CUSTOMER_INFORMATION, part, int(fits), int(not fits), now)
            return fits

        return await self.db.write(op)

    async def customer_information(self, charger_id: str) -> list[dict[str, Any]]:
        """Per report, its parts joined in seqNo order; the latest news first."""
        reports = await self.reports(charger_id, CUSTOMER_INFORMATION)
        rows = await self.db.fetchall(
            "SELECT request_id, data FROM customer_information WHERE charger_id = ? ORDER BY request_id, seq_no",
            (charger_id,),
        )
        data: dict[int, list[str]] = {}
        for r in rows:
            data.setdefault(r["request_id"], []).append(r["data"])
        return [{"request_id": rep["request_id"], "status": rep["status"], "parts": rep["parts"],
                 "complete": rep["complete"], "generated_at": rep["generated_at"], "updated_at": rep["updated_at"],
                 "data": "".join(data.get(rep["request_id"], []))} for rep in reports]  # fmt: skip

    # -- security events ------------------------------------------------------------------------------------

    async def security_event(self, charger_id: str, type: str, ts: datetime, tech_info: str | None,
                             critical: bool) -> None:  # fmt: skip
        """Stored, and a site event in the same commit (it goes north)."""

        async def op(conn: aiosqlite.Connection) -> None:
            now = utcnow()
            await conn.execute(
                "INSERT INTO security_events (charger_id, type, ts, tech_info, critical, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (charger_id, type, iso(ts), tech_info, critical, iso(now)),
            )
            await conn.execute(
                "DELETE FROM security_events WHERE rowid IN (SELECT rowid FROM security_events WHERE charger_id = ? "
                "ORDER BY id DESC LIMIT -1 OFFSET ?)",
                (charger_id, MAX_SECURITY_EVENTS),
            )
            await self.site_events.within(conn, "security_event", {
                "charger": charger_id, "type": type, "timestamp": iso(ts), "tech_info": tech_info,
                "critical": critical}, now)  # fmt: skip

        await self.db.write(op)

    async def security_events(self, charger_id: str, since: datetime | None = None,
                              limit: int = 1000) -> list[dict[str, Any]]:  # fmt: skip
        """Newest first; since: those that happened at or after it (by the charger's clock)."""
        rows = await self.db.fetchall(
            "SELECT id, type, ts, tech_info, critical, received_at FROM security_events WHERE charger_id = ? "
            "AND (? IS NULL OR ts >= ?) ORDER BY id DESC LIMIT ?",
            (charger_id, since and iso(since), since and iso(since), limit),
        )
        return [{**dict(r), "critical": bool(r["critical"])} for r in rows]


async def _bound(conn: aiosqlite.Connection, table: str, charger_id: str, limit: int) -> int:
    """Keep at most `limit` rows of a charger: the newest rows go (the highest rowids: the ones just inserted,
    as updates keep their rowid). Returns how many went."""
    cursor = await conn.execute(f"SELECT count(*) FROM {table} WHERE charger_id = ?", (charger_id,))
    excess = (await cursor.fetchone())[0] - limit
    if excess <= 0:
        return 0
    await conn.execute(f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE charger_id = ? "
                       "ORDER BY rowid DESC LIMIT ?)", (charger_id, excess))  # fmt: skip
    return excess


def _flag(value: int | None) -> bool | None:
    return None if value is None else bool(value)
