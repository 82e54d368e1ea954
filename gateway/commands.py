"""Typed commands and the one door they all go through.

Everything that acts on a device -- the console, the API, the CLI, MQTT, OPC UA, the relay, the load cap --
builds a command and calls :meth:`Commands.execute` with the actor behind it. The door checks the actor's
role, writes the audit record (before the command runs, and its outcome after), and hands the command to the
driver that registered for its type.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from gateway.auth import Actor, Role
from gateway.store.audit import AuditLog

log = logging.getLogger(__name__)


class CommandError(Exception):
    """A command that did not succeed, with a code the API, MQTT and OPC UA translate for their callers.

    Codes: forbidden, unknown_target, offline, busy, timeout, invalid (the request), call_error (the charger
    answered with a CALLERROR), bad_answer (the charger's answer breaks the schema), rejected (the charger said
    no, e.g. to a charging profile), unsupported (nothing here can do it), disabled (the part that would is
    switched off in the config), superseded (a newer limit for the same EVSE took its place before it was sent).
    """

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


@dataclass(frozen=True)
class Command:
    required_role: ClassVar[Role] = Role.operator

    @property
    def target(self) -> str | None:
        return getattr(self, "charger_id", None)

    def role_needed(self) -> Role:
        return self.required_role

    def describe(self) -> dict[str, Any]:
        """For the audit log: the command's fields, secrets masked."""
        return redact(asdict(self))


@dataclass(frozen=True)
class OcppRequest(Command):
    """Any OCPP request, by hand: the action name and its payload as the spec spells them."""

    charger_id: str
    action: str
    payload: dict[str, Any] = field(default_factory=dict)

    def role_needed(self) -> Role:
        return Role.admin if self.action in CONFIGURING_ACTIONS else Role.operator


@dataclass(frozen=True)
class RemoteStart(Command):
    charger_id: str
    id_tag: str
    evse: int | None = None


@dataclass(frozen=True)
class RemoteStop(Command):
    charger_id: str
    transaction_id: int  # the gateway's id, as listed by /api/v1/transactions


@dataclass(frozen=True)
class Reset(Command):
    charger_id: str
    hard: bool = False


@dataclass(frozen=True)
class Unlock(Command):
    charger_id: str
    evse: int = 1
    connector: int = 1


@dataclass(frozen=True)
class SetAvailability(Command):
    charger_id: str
    available: bool
    evse: int | None = None  # None: the whole charger


@dataclass(frozen=True)
class Reserve(Command):
    """Hold an EVSE (None: any of the charger's) for a badge until ``expiry`` (ISO 8601)."""

    charger_id: str
    id_tag: str
    expiry: str
    evse: int | None = None
    parent_id_tag: str | None = None


@dataclass(frozen=True)
class CancelReservation(Command):
    charger_id: str
    reservation_id: int


@dataclass(frozen=True)
class PutBadge(Command):
    """Add or change a badge on the site's list (status Accepted, Blocked, Expired or Invalid)."""

    id_tag: str
    status: str = "Accepted"
    expiry: str | None = None
    parent_id_tag: str | None = None
    note: str | None = None

    @property
    def target(self) -> str | None:
        return f"badge:{self.id_tag}"


@dataclass(frozen=True)
class RemoveBadge(Command):
    id_tag: str

    @property
    def target(self) -> str | None:
        return f"badge:{self.id_tag}"


# Requests that change how a charger is set up, where it connects and what it runs, or that hand its data
# (logs, customer records) somewhere: admins configure, operators only act.
CONFIGURING_ACTIONS = frozenset({
    "ChangeConfiguration", "SetVariables", "SetNetworkProfile", "UpdateFirmware", "SignedUpdateFirmware",
    "PublishFirmware", "UnpublishFirmware", "InstallCertificate", "DeleteCertificate", "CertificateSigned",
    "SendLocalList", "SetVariableMonitoring", "ClearVariableMonitoring", "SetMonitoringBase", "SetMonitoringLevel",
    "GetLog", "GetDiagnostics", "CustomerInformation", "DataTransfer",
})  # fmt: skip

SECRET_NAME = re.compile(r"password|passphrase|secret|authorizationkey|privatekey", re.IGNORECASE)
MASK = "***"


def redact(value: Any) -> Any:
    """Mask secrets for the audit log: fields named like one (password, ...), the value of a configuration key
    or device-model variable named like one (ChangeConfiguration AuthorizationKey, SetVariables
    BasicAuthPassword), and a VPN's key."""
    if isinstance(value, list):
        return [redact(item) for item in value]
    if not isinstance(value, dict):
        return value
    name = value.get("key")
    if isinstance(value.get("variable"), dict):
        name = value["variable"].get("name")
    secret_entry = isinstance(name, str) and SECRET_NAME.search(name) is not None
    masked = {}
    for key, item in value.items():
        if (SECRET_NAME.search(key) or (secret_entry and key in ("value", "attributeValue"))
                or (key == "key" and "password" in value)):  # fmt: skip
            masked[key] = MASK
        else:
            masked[key] = redact(item)
    return masked


@dataclass(frozen=True)
class SetChargingLimit(Command):
    """A limit on what an EVSE (evse 0: the charger as a whole) may draw, as a charging profile.

    purpose: baseline (the charger's own maximum, kept for good: the site stays safe if the gateway dies),
    ceiling (its maximum while the gateway steers it, above the baseline, expiring after valid_s), default
    (what a session starts with before the load cap has spoken), dynamic (the load cap's, expiring after
    valid_s so that the default and the baseline take over when nobody renews it)."""

    charger_id: str
    evse: int
    limit_w: float
    purpose: str = "dynamic"
    phases: int = 3
    valid_s: int | None = None


MAX_LIMIT_W = 1e9  # a limit beyond a gigawatt is a typing error, not a site
MAX_VALID_S = 366 * 86400
SOURCE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def watts(value: Any, what: str, optional: bool = True) -> float | None:
    """A limit in W as a command takes it: a finite number from 0 to MAX_LIMIT_W (None lifts it, where allowed).
    Every door (API, MQTT, OPC UA, CLI, console) gets this same refusal for the same bad value."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0 <= value <= MAX_LIMIT_W:  # fmt: skip
        shown = f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else repr(value)[:40]
        raise CommandError("invalid", f"{what} must be a number of W from 0 to {MAX_LIMIT_W:.0f}"
                           + (", or null to lift it" if optional else "") + f", not {shown}")
    return float(value)


@dataclass(frozen=True)
class SetSiteLimit(Command):
    """An external limit on the site's import (None lifts it), kept per source; the strictest of all sources
    holds. With ``valid_s`` it lapses unless renewed within that many seconds (a DSO or BMS that falls silent
    gives the site back its own limit)."""

    limit_w: float | None
    source: str = "api"
    valid_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "limit_w", watts(self.limit_w, "limit_w"))
        if not isinstance(self.source, str) or not SOURCE.fullmatch(self.source):
            raise CommandError("invalid", "source: 1 to 64 letters, digits or _.:-")
        if self.valid_s is not None and (isinstance(self.valid_s, bool) or not isinstance(self.valid_s, int | float)
                                         or not math.isfinite(self.valid_s) or not 0 < self.valid_s <= MAX_VALID_S):
            raise CommandError("invalid", f"valid_s must be a number of seconds from 1 to {MAX_VALID_S}, or null")

    @property
    def target(self) -> str | None:
        return "site"


@dataclass(frozen=True)
class SetMode(Command):
    mode: str  # automatic, manual

    def __post_init__(self) -> None:
        if self.mode not in ("automatic", "manual"):
            raise CommandError("invalid", f"mode {str(self.mode)[:40]!r}: automatic or manual")

    @property
    def target(self) -> str | None:
        return "site"


@dataclass(frozen=True)
class SetManualLimit(Command):
    """An operator's limit for one EVSE (None lifts it); in manual mode it is the EVSE's maximum."""

    charger_id: str
    evse: int
    limit_w: float | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "limit_w", watts(self.limit_w, "limit_w"))


Handler = Callable[[Any], Awaitable[Any]]
# Who the command being handled is for, for handlers that keep their own record of it (the alarm journal).
acting: ContextVar[Actor | None] = ContextVar("acting", default=None)


class Commands:
    def __init__(self, audit: AuditLog) -> None:
        self._audit = audit
        self._handlers: dict[type[Command], Handler] = {}

    def register(self, command_type: type[Command], handler: Handler) -> None:
        """The driver that owns a command type says so once, at start."""
        if command_type in self._handlers:
            raise ValueError(f"{command_type.__name__} already has a handler")
        self._handlers[command_type] = handler

    async def execute(self, command: Command, actor: Actor) -> Any:
        name = type(command).__name__
        # A control loop's routine commands (hundreds an hour) are audited only when they fail.
        audit_id = None if actor.automatic else await self._audit.begin(actor, name, command.target,
                                                                         command.describe())  # fmt: skip
        try:
            needed = command.role_needed()
            if actor.role < needed:
                raise CommandError("forbidden", f"{name} needs the {needed.name} role; {actor} is {actor.role.name}")
            handler = self._handlers.get(type(command))
            if handler is None:
                raise CommandError("unsupported", f"nothing on this gateway handles {name}")
            token = acting.set(actor)
            try:
                result = await handler(command)
            finally:
                acting.reset(token)
        except CommandError as e:
            log.info("command refused command=%s target=%s actor=%s code=%s", name, command.target, actor, e.code)
            await self._finish(audit_id, actor, command, e.code, e.as_json())
            raise
        except Exception as e:
            log.exception("command failed command=%s target=%s actor=%s", name, command.target, actor)
            await self._finish(audit_id, actor, command, "error", {"error": type(e).__name__})
            raise
        if audit_id is not None:
            await self._audit.finish(audit_id, "ok", redact(result))
        return result

    async def _finish(self, audit_id: int | None, actor: Actor, command: Command, outcome: str, result: Any) -> None:
        if audit_id is None:
            audit_id = await self._audit.begin(actor, type(command).__name__, command.target, command.describe())
        await self._audit.finish(audit_id, outcome, result)
