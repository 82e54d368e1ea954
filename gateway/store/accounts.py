"""Console users (hashed passwords) and API tokens (hashed, shown once)."""

from __future__ import annotations

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
        await self.db.execute(
            "INSERT INTO users (name, password_hash, role, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role",
            (name, hash_password(password), role.name, iso(utcnow())),
        )

    async def password_hashes(self) -> dict[str, tuple[str, Role]]:
        """Every user's hash and role, for a server that checks passwords where it cannot await (asyncua).
        A user whose role this version does not know is left out."""
        rows = await self.db.fetchall("SELECT name, password_hash, role FROM users")
        return {r["name"]: (r["password_hash"], Role[r["role"]]) for r in rows if r["role"] in Role.__members__}

    async def check_user(self, name: str, password: str) -> Role | None:
        row = await self.db.fetchone("SELECT password_hash, role FROM users WHERE name = ?", (name,))
        if row is None or not verify_password(password, row["password_hash"]):
            return None
        return Role.parse(row["role"])
