"""Smart charging as the chargers hold it: the charging profiles each one accepted or reported, the limits it
says an outside source put on it, and what the EVs on its EVSEs said they need.

Profiles are kept as the JSON on the wire (the charger's version spelling) beside the columns a
ClearChargingProfile filters on; one with the same id on the same EVSE replaces the old one, so the load cap,
which renews its few profiles all day long, costs one upsert each time and never grows the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiosqlite

from gateway.clock import iso
from gateway.store.db import Database
from gateway.store.events import Events

SENT, REPORTED = "sent", "reported"
MAX_REPORTED = 1000  # per charger: reports come from the network, so what is kept of them is bounded
EXTERNAL = "ChargingStationExternalConstraints"  # set by the charger's own sources: no ClearChargingProfile clears it


@dataclass(frozen=True)
class ChargingProfile:
    """One profile on one EVSE (0: the charger as a whole): its indexed properties and the JSON it came as."""

    evse: int
    id: int
    stack_level: int
    purpose: str
    kind: str
    profile: dict[str, Any]
    transaction_id: str | None = None
    valid_from: str | None = None
    valid_to: str | None = None


_COLUMNS = ("charger_id, evse, profile_id, source, stack_level, purpose, kind, transaction_id, valid_from, valid_to, "
            "limit_source, request_id, updated_at, profile")  # fmt: skip
_UPSERT = (
    f"INSERT INTO charging_profiles ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (charger_id, evse, profile_id, source) DO UPDATE SET stack_level = excluded.stack_level, "
    "purpose = excluded.purpose, kind = excluded.kind, transaction_id = excluded.transaction_id, "
    "valid_from = excluded.valid_from, valid_to = excluded.valid_to, limit_source = excluded.limit_source, "
    "request_id = excluded.request_id, updated_at = excluded.updated_at, profile = excluded.profile"
)


def _row(charger_id: str, p: ChargingProfile, source: str, at: datetime, limit_source: str | None = None,
         request_id: int | None = None) -> tuple[Any, ...]:  # fmt: skip
    return (charger_id, p.evse, p.id, source, p.stack_level, p.purpose, p.kind, p.transaction_id, p.valid_from,
            p.valid_to, limit_source, request_id, iso(at), json.dumps(p.profile))  # fmt: skip


class ChargingProfiles:
    def __init__(self, db: Database, events: Events) -> None:
        self.db = db
        self.site_events = events

    # -- profiles --------------------------------------------------------------------------------------------

    async def keep_sent(self, charger_id: str, profile: ChargingProfile, at: datetime) -> None:
        """The charger accepted this profile (SetChargingProfile)."""
        await self.db.execute(_UPSERT, _row(charger_id, profile, SENT, at))

    async def keep_reported(self, charger_id: str, request_id: int, limit_source: str,
                            profiles: list[ChargingProfile], at: datetime) -> None:  # fmt: skip
        """One part of a charger's report of the profiles it holds (ReportChargingProfiles)."""

        async def op(conn: aiosqlite.Connection) -> None:
            await conn.executemany(_UPSERT, [_row(charger_id, p, REPORTED, at, limit_source, request_id)
                                             for p in profiles])  # fmt: skip
            await conn.execute(
                "DELETE FROM charging_profiles WHERE rowid IN (SELECT rowid FROM charging_profiles WHERE "
                "charger_id = ? AND source = ? ORDER BY updated_at DESC LIMIT -1 OFFSET ?)",
                (charger_id, REPORTED, MAX_REPORTED),
            )

        await self.db.write(op)

    async def forget_reported(self, charger_id: str, request_id: int, evse: int | None = None,
                              purpose: str | None = None, stack_level: int | None = None,
                              ids: list[int] | None = None,
                              limit_sources: list[str] | None = None) -> None:  # fmt: skip
        """A new report was asked for (GetChargingProfiles): what older reports said of the profiles it covers
        is out of date. Parts of the new report may already be in, so they are spared by their request id."""
        clauses, params = _filter(evse, purpose, stack_level)
        if ids:
            clauses.append(f"profile_id IN ({', '.join('?' * len(ids))})")
            params += ids
        if limit_sources:
            clauses.append(f"limit_source IN ({', '.join('?' * len(limit_sources))})")
            params += limit_sources
        await self.db.execute(
            "DELETE FROM charging_profiles WHERE charger_id = ? AND source = ? AND request_id IS NOT ? "
            + "".join(f" AND {c}" for c in clauses),
            (charger_id, REPORTED, request_id, *params),
        )

    async def clear(self, charger_id: str, profile_id: int | None = None, evse: int | None = None,
                    purpose: str | None = None, stack_level: int | None = None) -> int:  # fmt: skip
        """The charger cleared profiles (ClearChargingProfile accepted): by id, else by the filters given;
        returns how many were removed. The charger's external constraints are not the gateway's to clear."""
        if profile_id is not None:
            clauses, params = ["profile_id = ?"], [profile_id]
        else:
            clauses, params = _filter(evse, purpose, stack_level)
        clauses.append("purpose != ?")
        params.append(EXTERNAL)

        async def op(conn: aiosqlite.Connection) -> int:
            cursor = await conn.execute(
                "DELETE FROM charging_profiles WHERE charger_id = ?" + "".join(f" AND {c}" for c in clauses),
                (charger_id, *params),
            )
            return cursor.rowcount

        return await self.db.write(op)

    async def drop_transaction(self, charger_id: str, transaction_id: str, evse: int | None = None) -> None:
        """A transaction ended: its TxProfiles ended with it, and so did one given with its remote start (that
        names no transaction: on the EVSE, or on 0 when the charger chose it)."""
        await self.db.execute(
            "DELETE FROM charging_profiles WHERE charger_id = ? AND purpose = 'TxProfile' AND (transaction_id = ?"
            " OR (transaction_id IS NULL AND evse IN (?, 0)))",
            (charger_id, transaction_id, evse),
        )

    async def profiles(self, charger_id: str, source: str | None = None) -> list[dict[str, Any]]:
        sql = f"SELECT {_COLUMNS} FROM charging_profiles WHERE charger_id = ?"
        params: list[Any] = [charger_id]
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        rows = await self.db.fetchall(sql + " ORDER BY evse, purpose, stack_level DESC, profile_id, source", params)
        return [{"evse": r["evse"], "id": r["profile_id"], "source": r["source"], "stack_level": r["stack_level"],
                 "purpose": r["purpose"], "kind": r["kind"], "transaction_id": r["transaction_id"],
                 "valid_from": r["valid_from"], "valid_to": r["valid_to"], "limit_source": r["limit_source"],
                 "request_id": r["request_id"], "updated_at": r["updated_at"], "profile": json.loads(r["profile"])}
                for r in rows]  # fmt: skip

    # -- limits from outside sources (NotifyChargingLimit, ClearedChargingLimit) ------------------------------

    async def set_limit(self, charger_id: str, evse: int, limit_source: str, grid_critical: bool | None,
                        schedule: list[dict[str, Any]] | None, at: datetime) -> None:  # fmt: skip
        async def op(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO charging_limits (charger_id, evse, limit_source, grid_critical, schedule, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (charger_id, evse, limit_source) DO UPDATE SET "
                "grid_critical = excluded.grid_critical, schedule = excluded.schedule, "
                "updated_at = excluded.updated_at",
                (charger_id, evse, limit_source, grid_critical, None if schedule is None else json.dumps(schedule),
                 iso(at)),
            )  # fmt: skip
            await self.site_events.within(conn, "charging_limit", {
                "charger": charger_id, "evse": evse, "source": limit_source,
                "grid_critical": grid_critical}, at)  # fmt: skip

        await self.db.write(op)

    async def clear_limit(self, charger_id: str, evse: int | None, limit_source: str, at: datetime) -> None:
        """The source lifted its limit: on one EVSE, or (evse None) anywhere on the charger."""

        async def op(conn: aiosqlite.Connection) -> None:
            sql = "DELETE FROM charging_limits WHERE charger_id = ? AND limit_source = ?"
            params: list[Any] = [charger_id, limit_source]
            if evse is not None:
                sql += " AND evse = ?"
                params.append(evse)
            await conn.execute(sql, params)
            await self.site_events.within(conn, "charging_limit_cleared", {
                "charger": charger_id, "evse": evse, "source": limit_source}, at)  # fmt: skip

        await self.db.write(op)

    async def limits(self, charger_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT evse, limit_source, grid_critical, schedule, updated_at FROM charging_limits WHERE charger_id = ? "
            "ORDER BY evse, limit_source", (charger_id,),
        )  # fmt: skip
        return [{"evse": r["evse"], "source": r["limit_source"],
                 "grid_critical": None if r["grid_critical"] is None else bool(r["grid_critical"]),
                 "schedule": None if r["schedule"] is None else json.loads(r["schedule"]),
                 "updated_at": r["updated_at"]}
                for r in rows]  # fmt: skip

    # -- what the EVs say (NotifyEVChargingNeeds, NotifyEVChargingSchedule) ------------------------------------

    async def set_needs(self, charger_id: str, evse: int, transaction_id: int | None, departure_time: str | None,
                        energy_wh: float | None, max_power_w: float | None, needs: dict[str, Any],
                        at: datetime) -> None:  # fmt: skip
        async def op(conn: aiosqlite.Connection) -> None:
            await conn.execute(_NEEDS_UPSERT, (charger_id, evse, transaction_id, departure_time, energy_wh,
                                               max_power_w, json.dumps(needs), iso(at)))  # fmt: skip
            await self.site_events.within(conn, "ev_charging_needs", {
                "charger": charger_id, "evse": evse, "transaction_id": transaction_id,
                "departure_time": departure_time, "energy_wh": energy_wh}, at)  # fmt: skip

        await self.db.write(op)

    async def needs(self, charger_id: str) -> list[dict[str, Any]]:
        return await self._per_evse(charger_id, "ev_charging_needs", _NEEDS, "needs")

    async def set_ev_schedule(self, charger_id: str, evse: int, transaction_id: int | None, time_base: str,
                              schedule: dict[str, Any], at: datetime) -> None:  # fmt: skip
        await self.db.execute(_SCHEDULE_UPSERT, (charger_id, evse, transaction_id, time_base, json.dumps(schedule),
                                                 iso(at)))  # fmt: skip

    async def ev_schedules(self, charger_id: str) -> list[dict[str, Any]]:
        return await self._per_evse(charger_id, "ev_charging_schedules", _SCHEDULE, "schedule")

    async def _per_evse(self, charger_id: str, table: str, columns: tuple[str, ...],
                        document: str) -> list[dict[str, Any]]:  # fmt: skip
        """The latest per EVSE of what the EVs said, its JSON column decoded."""
        rows = await self.db.fetchall(f"SELECT {', '.join(columns)} FROM {table} WHERE charger_id = ? ORDER BY evse",
                                      (charger_id,))  # fmt: skip
        return [dict(r) | {document: json.loads(r[document])} for r in rows]


def _latest_per_evse(table: str, columns: tuple[str, ...]) -> str:
    """The upsert of a table that keeps the latest row per (charger_id, evse); columns after those two."""
    names = ("charger_id", *columns)
    return (f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) ON CONFLICT "
            f"(charger_id, evse) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in columns if c != 'evse')}")


_NEEDS = ("evse", "transaction_id", "departure_time", "energy_wh", "max_power_w", "needs", "received_at")
_SCHEDULE = ("evse", "transaction_id", "time_base", "schedule", "received_at")
_NEEDS_UPSERT = _latest_per_evse("ev_charging_needs", _NEEDS)
_SCHEDULE_UPSERT = _latest_per_evse("ev_charging_schedules", _SCHEDULE)


def _filter(evse: int | None, purpose: str | None, stack_level: int | None) -> tuple[list[str], list[Any]]:
    clauses, params = [], []
    for column, value in (("evse", evse), ("purpose", purpose), ("stack_level", stack_level)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return clauses, params
