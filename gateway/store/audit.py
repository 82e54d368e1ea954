"""The audit log: every command through the one door, with who sent it and how it ended."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from gateway.auth import Actor
from gateway.clock import iso, utcnow
from gateway.store.db import Database, where


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def begin(self, actor: Actor, command: str, target: str | None, request: Any) -> int:
        """Recorded before the command runs, so an attempt that never finishes still shows."""
        return await self.db.execute(
            "INSERT INTO audit (ts, actor, role, command, target, request) VALUES (?, ?, ?, ?, ?, ?)",
            (iso(utcnow()), str(actor), actor.role.name, command, target, json.dumps(request, default=str)),
        )

    async def finish(self, audit_id: int, outcome: str, result: Any = None) -> None:
        await self.db.execute(
            "UPDATE audit SET outcome = ?, result = ?, finished_at = ? WHERE id = ?",
            (outcome, None if result is None else json.dumps(result, default=str), iso(utcnow()), audit_id),
        )

    async def query(self, since: datetime | None = None, target: str | None = None, limit: int = 1000) -> list[dict]:
        clause, params = where(("ts >= ?", since and iso(since)), ("target = ?", target))
        rows = await self.db.fetchall(
            f"SELECT id, ts, actor, role, command, target, request, outcome, result, finished_at FROM audit {clause} "
            "ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return [
            {**dict(r), "request": _loads(r["request"]), "result": _loads(r["result"])} for r in rows
        ]

    async def prune(self, before: datetime) -> None:
        await self.db.execute("DELETE FROM audit WHERE ts < ?", (iso(before),))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
