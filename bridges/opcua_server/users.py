"""Who logs in: the store's console users for asyncua's user manager, with a bound on password checks."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager

from gateway.auth import Role, verify_password
from gateway.store import Store

log = logging.getLogger(__name__)

PASSWORD_CHECKS_BURST, PASSWORD_CHECKS_PER_S = 5, 1.0
VERIFIED_LOGINS = 64


@dataclass
class GatewayUser(User):
    """asyncua's user (its role: what the protocol allows) with the gateway's role (what the door allows)."""

    gateway_role: Role = Role.guest


class _Budget:
    """A token bucket: at most `burst` at once, `rate` per second after that."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst, self.rate = burst, rate
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Users(UserManager):
    """The store's users for asyncua, whose user manager is asked synchronously at ActivateSession."""

    def __init__(self, store: Store, allow_anonymous: bool) -> None:
        self.store = store
        self.allow_anonymous = allow_anonymous
        self._users: dict[str, tuple[str, Role]] = {}
        self._key = secrets.token_bytes(32)
        self._verified: OrderedDict[tuple[str, bytes], str] = OrderedDict()  # (name, HMAC of password) -> hash
        self._budget = _Budget(PASSWORD_CHECKS_BURST, PASSWORD_CHECKS_PER_S)
        self.refused = 0

    async def refresh(self) -> None:
        """Accounts.check_user is a coroutine, which asyncua cannot await: a copy of the hashes, read per session."""
        try:
            self._users = await self.store.accounts.password_hashes()
        except Exception as e:  # noqa: BLE001 -- the store is busy or closing: the copy from the last session holds
            log.warning("OPC UA could not read the users, keeping the last copy: %s", e)

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:  # fmt: skip
        if not username:
            if self.allow_anonymous:
                return GatewayUser(role=UserRole.User, name="anonymous", gateway_role=Role.guest)
            return self._refuse("anonymous", "anonymous access is off")
        entry = self._users.get(username)
        if entry is None or not password:
            return self._refuse(username, "unknown user or no password")
        stored, role = entry
        key = (username, hmac.new(self._key, password.encode(), hashlib.sha256).digest())
        if self._verified.get(key) != stored:
            if not self._budget.take():
                return self._refuse(username, "too many password checks, try again in a moment")
            if not verify_password(password, stored):
                return self._refuse(username, "wrong password")
            self._verified[key] = stored
            while len(self._verified) > VERIFIED_LOGINS:
                self._verified.popitem(last=False)
        return GatewayUser(role=UserRole.User, name=username, gateway_role=role)

    def _refuse(self, username: str, reason: str) -> None:
        self.refused += 1
        log.warning("OPC UA login refused user=%s: %s", username, reason)
