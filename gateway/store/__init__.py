"""The store: everything durable, in one SQLite file under the state directory.

``Store`` opens the database and hands out one object per concern: ``transactions`` (sessions and meter
values), ``chargers`` (boot info, presence, status, refused ids), ``audit``, ``accounts`` (users, tokens),
``events`` (what happened on the site), ``outbox`` (north-bound messages until acknowledged), ``badges`` (the
site's badge list, local lists, authorization cache, reservations), ``files`` (firmware served, uploads
received), ``reports`` (device model, monitoring, display messages, customer information, security events),
``charging_profiles`` (profiles chargers accepted, limits they report, what EVs need), ``site_limits`` (external
and manual limits and the load cap's mode), ``alarms`` (alarm states, their journal, notifications waiting for
delivery).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from gateway.clock import utcnow
from gateway.store.accounts import Accounts
from gateway.store.alarms import Alarms
from gateway.store.audit import AuditLog
from gateway.store.badges import Badges
from gateway.store.chargers import Chargers
from gateway.store.charging_profiles import ChargingProfiles
from gateway.store.db import Database
from gateway.store.events import Events
from gateway.store.files import Files
from gateway.store.outbox import Outbox
from gateway.store.reports import Reports
from gateway.store.site_limits import SiteLimits
from gateway.store.transactions import Sample, Transaction, Transactions

__all__ = ["Store", "Sample", "Transaction", "DB_NAME"]

DB_NAME = "evedge.db"


class Store:
    def __init__(self, state_dir: Path, busy_timeout_ms: int = 10000) -> None:
        self.db = Database(state_dir / DB_NAME, busy_timeout_ms)
        self.outbox = Outbox(self.db)
        self.events = Events(self.db, self.outbox)
        self.transactions = Transactions(self.db, self.events)
        self.chargers = Chargers(self.db, self.events)
        self.charging_profiles = ChargingProfiles(self.db, self.events)
        self.audit = AuditLog(self.db)
        self.accounts = Accounts(self.db)
        self.reports = Reports(self.db, self.events)
        self.files = Files(self.db, self.events, state_dir)
        self.badges = Badges(self.db, self.events)
        self.site_limits = SiteLimits(self.db, self.events)
        self.alarms = Alarms(self.db, self.outbox)

    async def open(self) -> Store:
        await self.db.open()
        return self

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Store:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def health(self) -> dict[str, Any]:
        db = self.db
        if not db.is_open:
            return {"status": "down"}
        if db.last_error is not None:
            return {"status": "error", "error": db.last_error, "failed_batches": db.failed_batches}
        return {"status": "ok", "commits": db.commits}

    async def prune(self, meter_values_days: int, audit_days: int) -> int:
        """Housekeeping: old meter values, old audit records, expired tokens. Sessions are kept."""
        now = utcnow()
        removed = await self.transactions.prune_meter_values(now - timedelta(days=meter_values_days))
        await self.audit.prune(now - timedelta(days=audit_days))
        await self.alarms.prune(now - timedelta(days=audit_days))
        await self.events.prune(now - timedelta(days=meter_values_days))
        await self.accounts.prune_tokens()
        return removed
