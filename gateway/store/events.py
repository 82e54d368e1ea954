"""Events: what happened on the site, kept in order (allocation changes, fail-safe on and off, ...)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from gateway.clock import iso, utcnow
from gateway.store.db import Database


class Events:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, kind: str, payload: dict[str, Any], at: datetime | None = None) -> int:
        return await self.db.execute(
            "INSERT INTO events (ts, kind, payload) VALUES (?, ?, ?)",
            (iso(at or utcnow()), kind, json.dumps(payload, separators=(",", ":"))),
        )

    async def query(self, kind: str | None = None, since: datetime | None = None, limit: int = 1000) -> list[dict]:
        clauses, params = [], []
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        if since is not None:
            clauses.append("ts >= ?")
            params.append(iso(since))
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await self.db.fetchall(
            f"SELECT id, ts, kind, payload FROM events {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        )
        return [{"id": r["id"], "ts": r["ts"], "kind": r["kind"], "payload": json.loads(r["payload"])} for r in rows]

    async def prune(self, before: datetime) -> None:
        await self.db.execute("DELETE FROM events WHERE ts < ?", (iso(before),))
