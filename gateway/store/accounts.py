"""Console users (hashed passwords) and API tokens (hashed, shown once).

A password hash is slow on purpose (scrypt, tens of ms and 16 MiB): it is made and checked in a worker thread,
never in the event loop that serves the chargers.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime, timedelta

from gateway.auth import Role, hash_password, new_token, token_digest, verify_password
from gateway.clock import iso, utcnow
from gateway.store.db import Database


class Accounts:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_token(self, role: Role, label: str | None = None, ttl: timedelta | None = None) -> str:
        """A new bearer token; only its digest is kept, so this is the one time it can be read."""
        token = new_token()
        now = utcnow()
        await self.db.execute(
            "INSERT INTO api_tokens (digest, role, label, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (token_digest(token), role.name, label, iso(now), iso(now + ttl) if ttl else None),
        )
        return token

    async def token_role(self, token: str, now: datetime | None = None) -> tuple[Role, str] | None:
        """(role, label) of a valid token, None when unknown or expired."""
        row = await self.db.fetchone(
            "SELECT id, role, label, expires_at FROM api_tokens WHERE digest = ?", (token_digest(token),)
        )
        if row is None or (row["expires_at"] is not None and row["expires_at"] <= iso(now or utcnow())):
            return None
        return Role.parse(row["role"]), row["label"] or f"token-{row['id']}"

    async def revoke_label(self, label: str) -> None:
        await self.db.execute("DELETE FROM api_tokens WHERE label = ?", (label,))

    async def revoke_token(self, token: str) -> None:
        await self.db.execute("DELETE FROM api_tokens WHERE digest = ?", (token_digest(token),))

    async def prune_tokens(self) -> None:
        await self.db.execute("DELETE FROM api_tokens WHERE expires_at IS NOT NULL AND expires_at <= ?",
                              (iso(utcnow()),))  # fmt: skip

    async def add_user(self, name: str, password: str, role: Role) -> None:
        digest = await asyncio.to_thread(hash_password, password)
        await self.db.execute(
            "INSERT INTO users (name, password_hash, role, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role",
            (name, digest, role.name, iso(utcnow())),
        )

    async def has_users(self) -> bool:
        return await self.db.fetchone("SELECT 1 FROM users LIMIT 1") is not None

    async def password_hashes(self) -> dict[str, tuple[str, Role]]:
        """Every user's hash and role, for a server that checks passwords where it cannot await (asyncua).
        A user whose role this version does not know is left out."""
        rows = await self.db.fetchall("SELECT name, password_hash, role FROM users")
        return {r["name"]: (r["password_hash"], Role[r["role"]]) for r in rows if r["role"] in Role.__members__}

    async def check_user(self, name: str, password: str) -> Role | None:
        """The user's role when the password is theirs. An unknown name costs the same hash as a known one, so
        the time taken does not tell whether a user exists."""
        row = await self.db.fetchone("SELECT password_hash, role FROM users WHERE name = ?", (name,))
        stored = row["password_hash"] if row is not None else None
        if not await asyncio.to_thread(_verify, password, stored):
            return None
        return Role.parse(row["role"])


def _verify(password: str, stored: str | None) -> bool:
    return verify_password(password, stored if stored is not None else _decoy()) and stored is not None


@functools.cache
def _decoy() -> str:
    return hash_password("no user has this password")
