"""Who may do what: roles, actors, password hashes and API tokens.

Passwords (chargers' Basic-auth keys, console users) are stored as scrypt hashes from the standard library:
memory-hard, no extra dependency, and cheap enough to verify on a Pi (~16 MiB, tens of ms).
API tokens are long random strings, so a plain SHA-256 of them is enough to store.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024
TOKEN_PREFIX = "evt_"


class Role(enum.IntEnum):
    """Guests read, operators act on chargers and limits, admins configure."""

    guest = 1
    operator = 2
    admin = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unknown role {name!r}: expected one of {', '.join(r.name for r in cls)}") from None


@dataclass(frozen=True)
class Actor:
    """Who is behind a command: shown in the audit log as 'via:name'."""

    name: str
    role: Role
    via: str  # api, cli, console, mqtt, opcua, loadcap, ...
    automatic: bool = False  # a control loop: its many routine commands are audited only when they fail

    def __str__(self) -> str:
        return f"{self.via}:{self.name}"


SYSTEM = Actor("gateway", Role.admin, "system")


def hash_password(password: str) -> str:
    """'scrypt$N$r$p$salt$hash', base64 without padding."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str | bytes, stored: str) -> bool:
    try:
        n, r, p, salt, digest = _parse(stored)
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), digest)


def check_password_hash_format(stored: str) -> None:
    """Raise ValueError with a readable reason when a configured hash cannot be used."""
    _parse(stored)


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not a password hash made by `evedge passwd` (expected scrypt$N$r$p$salt$hash)")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        raise ValueError("the password hash is damaged") from None
    if n < 2 or n & (n - 1) or n > 2**20 or not 1 <= r <= 32 or not 1 <= p <= 16 or len(digest) < 16:
        raise ValueError("the password hash has parameters out of range")
    return n, r, p, salt, digest


def _scrypt(password: str | bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    secret = password.encode() if isinstance(password, str) else password
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_basic_auth(header: str | None) -> tuple[str, bytes] | None:
    """'Basic dXNlcjpwYXNz' -> ('user', b'pass'); None when absent or malformed.

    The password stays bytes: OCPP 1.6 chargers may send their 20-byte AuthorizationKey raw, not as text.
    """
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        return (user.decode("utf-8"), password) if sep else None
    except (ValueError, UnicodeDecodeError):
        return None


def password_forms(password: bytes) -> list[bytes]:
    """The forms a charger's password may be configured in: as sent, and -- for raw bytes, which only OCPP
    1.6 AuthorizationKeys are -- their hexadecimal text, as the whitepaper has technicians configure it."""
    try:
        password.decode("utf-8")
        return [password]
    except UnicodeDecodeError:
        return [password.hex().upper().encode(), password.hex().encode()]


def same_password(sent: bytes, configured: str) -> bool:
    """Constant-time comparison against a configured plaintext password (or AuthorizationKey in hex)."""
    candidates = [configured.encode()]
    if len(configured) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in configured):
        candidates.append(bytes.fromhex(configured))
    return any(hmac.compare_digest(sent, c) for c in candidates)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
