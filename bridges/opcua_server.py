"""OPC UA server for the BMS/SCADA: the process image as tags, commands as methods, site events as events.

Integrators write tag lists without browsing, so every node id is derived from a point name by one rule and
never written out per signal. The address space follows the process image: a node is made when its point first
appears (a charger accepted later, an EVSE discovered), and the configured site, chargers, EVSEs and meters are
made at start so the tags of PRODUCT.md §9 exist before their first value.

Node ids (namespace ``urn:evedge:{gatewayId}``, string ids): ``Site`` + the point's path segments, where the
segments in collection position (the 1st, 3rd, ... after a leading ``site``) and the last one (the leaf) are
CamelCased -- split on ``_``, each part capitalised, ``soc`` spelt ``SoC`` -- and the ids between them (charger,
EVSE, meter ids) stay as they are::

    site/limit_w                        Site.LimitW
    chargers/CP01/online                Site.Chargers.CP01.Online
    chargers/CP01/evse/1/power_w        Site.Chargers.CP01.Evse.1.PowerW
    chargers/CP01/evse/1/current_a_l1   Site.Chargers.CP01.Evse.1.CurrentAL1
    meters/grid/power_w                 Site.Meters.grid.PowerW

Collections are folders, ids are objects (chargers are of ``ChargerType``). A numeric point with a unit is an
AnalogItemType with EngineeringUnits (UNECE codes) and EURange (NaN where the range is not known, as Part 8
says); the others are BaseDataVariables of the point's type (Double, Boolean, String, Int64).

Values: SourceTimestamp is the point's own time (the device's), ServerTimestamp when the server took it. Quality
good -> Good, uncertain -> UncertainLastUsableValue, bad -> BadNoCommunication; a point without a value (a lifted
limit, no grid reading in fail-safe) -> BadNoData; a node made ahead of its first value ->
BadWaitingForInitialData. Changes come from a coalescing Feed read at most every ``min_interval_s``: a slow
consumer never slows a producer.

Acting: ``Site.LimitW`` is writable, ``Site.SetLimit`` is a method, and each charger object has RemoteStart,
RemoteStop, Reset, Unlock and SetAvailability: one set of method nodes (``ChargerType.RemoteStart``, ...) that
every charger references, called with the charger (``Site.Chargers.CP01``) as the object. Each builds the typed
command and goes through ``commands.execute`` with the session's user (the door checks the role and audits);
the answer is a JSON string. Site.LimitW keeps showing the process image's limit (the strictest in force), never
what was written. A refused command is a Bad status, with its JSON reason in the output for clients that look::

    forbidden -> BadUserAccessDenied       invalid, unknown_target -> BadInvalidArgument
    offline -> BadNoCommunication          timeout -> BadTimeout           busy -> BadTooManyOperations
    rejected -> BadRequestNotAllowed       call_error, bad_answer -> BadDeviceFailure
    unsupported -> BadNotSupported         disabled -> BadConfigurationError     anything else -> BadInternalError

Site events (sessions, statuses, chargers coming and going, allocation, fail-safe) are ``EvedgeEventType`` events
(Kind, Data as JSON, a readable Message, a Severity) emitted by the Site object and by the Server object.

Security: Basic256Sha256 and Aes256Sha256RsaPss, Sign and SignAndEncrypt; the None policy only with
``allow_none`` (asyncua lets a client open a channel without security even when no such endpoint is offered: the
session is refused at activation), and a password never in clear. Users and roles are the store's console users
(anonymous only with ``allow_anonymous``, as a guest). asyncua asks its user manager synchronously, so the users
are read from the store at every CreateSession and checked at ActivateSession from that copy; a verified password
is remembered (keyed by an HMAC) so that reconnecting costs no scrypt, and at most a few scrypt checks run per
second, so guessing cannot stall the event loop. Client certificates are trusted when their file (DER or PEM) is
in ``{state_dir}/opcua/trusted/`` or was issued by a CA certificate there; the folder is read again at every
CreateSession, so approving a certificate (moving it there from ``{state_dir}/opcua/rejected/``, where unknown
ones are kept) needs no restart. The server certificate is made at first start in ``{state_dir}/opcua/`` (and
made again when it expires or the host name changes) unless the settings name one.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import uacrypto
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.event_generator import EventGenerator
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.auth import Actor, Role, verify_password
from gateway.commands import (
    Command,
    CommandError,
    Commands,
    RemoteStart,
    RemoteStop,
    Reset,
    SetAvailability,
    SetSiteLimit,
    Unlock,
)
from gateway.model import Site
from gateway.points import Point, ProcessImage, Quality, evse_point, kind_of
from gateway.settings import Settings, split_listen
from gateway.store import Store
from gateway.store.events import Event
from gateway.tasks import raise_if_cancelled

log = logging.getLogger(__name__)

PATH = "evedge"  # opc.tcp://HOST:PORT/evedge
ROOT = "Site"
LIMIT_POINT = "site/limit_w"
WRITABLE = frozenset({LIMIT_POINT})

# Made ahead of their first value (PRODUCT.md §9): the site's, every charger's (by collection path), every EVSE's.
SITE_POINTS = ("limit_w", "grid_power_w")
TEMPLATES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("chargers",): ("online",),
    ("chargers", "evse"): ("status", "power_w", "current_a", "energy_wh", "soc", "limit_w", "transaction_id"),
    ("meters",): ("online", "power_w"),
}
SPECIAL_WORDS = {"soc": "SoC"}

# UNECE Recommendation 20 common codes (OPC UA Part 8, 5.6.4.4): unit -> (code, description).
UNECE_URI = "http://www.opcfoundation.org/UA/units/un/cefact"
# Other units (an inline register's) keep their text, with UnitId -1 ("not available").
UNECE = {"W": ("WTT", "watt"), "Wh": ("WHR", "watt hour"), "kW": ("KWT", "kilowatt"),
         "kWh": ("KWH", "kilowatt hour"), "A": ("AMP", "ampere"), "V": ("VLT", "volt"), "Hz": ("HTZ", "hertz"),
         "%": ("P1", "percent"), "°C": ("CEL", "degree Celsius")}  # fmt: skip
KNOWN_RANGES = {"%": (0.0, 100.0)}

_S = ua.StatusCodes
GOOD = ua.StatusCode(_S.Good)
QUALITY_STATUS = {Quality.good: GOOD, Quality.uncertain: ua.StatusCode(_S.UncertainLastUsableValue),
                  Quality.bad: ua.StatusCode(_S.BadNoCommunication)}  # fmt: skip
NO_DATA = ua.StatusCode(_S.BadNoData)
WAITING = ua.StatusCode(_S.BadWaitingForInitialData)
COMMAND_STATUS = {
    "forbidden": _S.BadUserAccessDenied, "unknown_target": _S.BadInvalidArgument, "invalid": _S.BadInvalidArgument,
    "offline": _S.BadNoCommunication, "timeout": _S.BadTimeout, "busy": _S.BadTooManyOperations,
    "rejected": _S.BadRequestNotAllowed, "call_error": _S.BadDeviceFailure, "bad_answer": _S.BadDeviceFailure,
    "unsupported": _S.BadNotSupported, "disabled": _S.BadConfigurationError,
}  # fmt: skip

SEVERITY_HIGH, SEVERITY_LOW = 700, 100
FAULTLESS = (None, "", "NoError")

# Bounds: nodes are made in batches between which the loop runs; what a client may ask for is capped.
ADD_NODES_BATCH = 200
MAX_CONNECTIONS = 32
MAX_SUBSCRIPTIONS = 64
MAX_ITEM_QUEUE = 100
PENDING_ACTIVATION_S = 10.0
EVENT_BACKLOG = 1000
MAX_TRUSTED_FILES = 500
MAX_REJECTED_FILES = 100
PASSWORD_CHECKS_BURST, PASSWORD_CHECKS_PER_S = 5, 1.0
VERIFIED_LOGINS = 64
STOP_TIMEOUT_S = 5.0

_caller: contextvars.ContextVar[_User | None] = contextvars.ContextVar("opcua_caller", default=None)


# -- names --------------------------------------------------------------------------------------------------


def camel(segment: str) -> str:
    """power_w -> PowerW, current_a_l1 -> CurrentAL1, soc -> SoC, evse -> Evse."""
    return "".join(SPECIAL_WORDS.get(part, part[:1].upper() + part[1:]) for part in segment.split("_") if part)


def _body(point: str) -> list[str]:
    segments = point.split("/")
    return segments[1:] if segments[0] == "site" and len(segments) > 1 else segments


def _object_names(body: list[str]) -> list[str]:
    """The browse names of the objects on the way to a point: collections CamelCased, ids as they are."""
    return [segment if i % 2 else camel(segment) for i, segment in enumerate(body[:-1])]


def node_path(point: str) -> str:
    """The string node id of a point: chargers/CP01/evse/1/power_w -> Site.Chargers.CP01.Evse.1.PowerW."""
    body = _body(point)
    return ".".join([ROOT, *_object_names(body), camel(body[-1])])


def eu_information(unit: str) -> ua.EUInformation:
    code, description = UNECE.get(unit, (None, unit))
    unit_id = -1
    if code is not None:
        unit_id = 0
        for char in code:
            unit_id = (unit_id << 8) | ord(char)
    return ua.EUInformation(NamespaceUri=UNECE_URI, UnitId=unit_id, DisplayName=ua.LocalizedText(unit),
                            Description=ua.LocalizedText(description))  # fmt: skip


def command_status(error: CommandError) -> ua.StatusCode:
    return ua.StatusCode(COMMAND_STATUS.get(error.code, _S.BadInternalError))


# -- values -------------------------------------------------------------------------------------------------

_VARIANT_OF_TYPE = {float: ua.VariantType.Double, bool: ua.VariantType.Boolean, int: ua.VariantType.Int64,
                    str: ua.VariantType.String}  # fmt: skip


def variant_type(name: str, value: Any, unit: str | None) -> ua.VariantType:
    """The schema's type for the point; for a point outside the schema, its unit's or its first value's."""
    kind = kind_of(name)
    if kind is not None:
        return _VARIANT_OF_TYPE.get(kind.type, ua.VariantType.String)
    if isinstance(value, bool):
        return ua.VariantType.Boolean
    if isinstance(value, int | float) or (value is None and unit):
        return ua.VariantType.Double
    return ua.VariantType.String


def _coerce(value: Any, vtype: ua.VariantType) -> Any:
    """The value in the node's type; ValueError, TypeError or OverflowError when it cannot be."""
    if vtype == ua.VariantType.Double:
        return float(value)
    if vtype == ua.VariantType.Int64:
        number = int(value)
        if not -(2**63) <= number < 2**63:
            raise OverflowError(f"{number} does not fit an Int64")
        return number
    if vtype == ua.VariantType.Boolean:
        if not isinstance(value, bool | int | float):
            raise TypeError(f"{value!r} is not a truth value")
        return bool(value)
    return value if isinstance(value, str) else json.dumps(value, default=str)


class FrozenValue(ua.DataValue):
    """A value made for one write and never changed after. asyncua deep-copies every value it hands to a monitored
    item, in case the writer changes it later; for these the copy is the value itself. That copy was most of the
    cost of a subscribed tag."""

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenValue:
        return self


def data_value(point: Point, vtype: ua.VariantType, now: datetime) -> FrozenValue:
    if point.value is None:
        return FrozenValue(StatusCode=NO_DATA, SourceTimestamp=point.ts, ServerTimestamp=now)
    return FrozenValue(ua.Variant(_coerce(point.value, vtype), vtype), StatusCode=QUALITY_STATUS[point.quality],
                       SourceTimestamp=point.ts, ServerTimestamp=now)  # fmt: skip


# -- events -------------------------------------------------------------------------------------------------


MESSAGES = {
    "transaction_started": "Transaction {id} started on {charger} EVSE {evse} (badge {id_tag})",
    "transaction_stopped": "Transaction {id} stopped on {charger} EVSE {evse}: {energy_wh} Wh, reason {stop_reason}",
    "status": "{charger} EVSE {evse} connector {connector} is {status}",
    "charger_online": "{charger} connected (OCPP {ocpp_version})",
    "charger_offline": "{charger} disconnected",
    "allocation": "Load cap allocation changed (headroom {headroom_w} W)",
}


class _Fields(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "?"


def describe(event: Event) -> tuple[str, int]:
    """A readable message and a severity (1-1000): faults, a charger gone and the fail-safe are high."""
    p = event.payload
    if event.kind == "failsafe":
        if p.get("on"):
            return f"Load cap in fail-safe: the EVs are held to {p.get('fallback_limit_w')} W", SEVERITY_HIGH
        return "Load cap out of fail-safe", SEVERITY_LOW
    template = MESSAGES.get(event.kind)
    fields = _Fields({k: v for k, v in p.items() if v is not None})
    text = template.format_map(fields) if template else f"{event.kind}: {json.dumps(p, default=str)}"
    if event.kind == "status" and (p.get("error_code") not in FAULTLESS or p.get("status") == "Faulted"):
        return f"{text} ({p.get('error_code')})", SEVERITY_HIGH
    return text, SEVERITY_HIGH if event.kind == "charger_offline" else SEVERITY_LOW


# -- methods ------------------------------------------------------------------------------------------------

_INTEGERS = frozenset({ua.VariantType.SByte, ua.VariantType.Byte, ua.VariantType.Int16, ua.VariantType.UInt16,
                       ua.VariantType.Int32, ua.VariantType.UInt32, ua.VariantType.Int64,
                       ua.VariantType.UInt64})  # fmt: skip
_NUMBERS = _INTEGERS | {ua.VariantType.Float, ua.VariantType.Double}
_RANGES = {ua.VariantType.UInt32: (0, 2**32 - 1), ua.VariantType.Int64: (-(2**63), 2**63 - 1)}


@dataclass(frozen=True)
class Arg:
    name: str
    type: ua.VariantType
    description: str

    def argument(self) -> ua.Argument:
        return ua.Argument(Name=self.name, DataType=ua.NodeId(self.type.value), ValueRank=-1,
                           Description=ua.LocalizedText(self.description))  # fmt: skip

    def read(self, variant: ua.Variant) -> Any:
        """The argument's value; ServiceError(BadTypeMismatch or BadOutOfRange) when it is not one."""
        value, given = variant.Value, variant.VariantType
        if self.type == ua.VariantType.Double and given in _NUMBERS:
            return float(value)
        if self.type in _RANGES and given in _INTEGERS:
            low, high = _RANGES[self.type]
            if not low <= value <= high:
                raise ServiceError(_S.BadOutOfRange)
            return int(value)
        if given == self.type and value is not None:
            return value
        raise ServiceError(_S.BadTypeMismatch)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    inputs: tuple[Arg, ...]
    build: Callable[[str, list[Any]], Command]  # (charger id or "site", argument values) -> command


def _nonempty(text: str) -> str:
    if not text:
        raise ValueError("the badge is empty")
    return text


def _evse_or_none(evse: int) -> int | None:
    if evse:
        Site.check_connector(evse, None, charger_level=False)
    return evse or None


def _unlock(charger_id: str, args: list[Any]) -> Unlock:
    Site.check_connector(args[0], args[1], charger_level=False)
    return Unlock(charger_id, args[0], args[1])


def _site_limit(_: str, args: list[Any]) -> SetSiteLimit:
    return SetSiteLimit(None if math.isnan(args[0]) or args[0] < 0 else args[0], source="opcua")


CHARGER_METHODS = (
    MethodSpec("RemoteStart", "Start a session with this badge (Evse 0: any free one)",
               (Arg("IdTag", ua.VariantType.String, "Badge the session is for"),
                Arg("Evse", ua.VariantType.UInt32, "EVSE to start on, 0 for any")),
               lambda cid, a: RemoteStart(cid, _nonempty(a[0]), _evse_or_none(a[1]))),
    MethodSpec("RemoteStop", "Stop a session", (Arg("TransactionId", ua.VariantType.Int64, "The gateway's id"),),
               lambda cid, a: RemoteStop(cid, a[0])),
    MethodSpec("Reset", "Restart the charger", (Arg("Hard", ua.VariantType.Boolean, "Hard (True) or soft reset"),),
               lambda cid, a: Reset(cid, a[0])),
    MethodSpec("Unlock", "Unlock a connector", (Arg("Evse", ua.VariantType.UInt32, "EVSE"),
                                                Arg("Connector", ua.VariantType.UInt32, "Connector of the EVSE")),
               _unlock),
    MethodSpec("SetAvailability", "Make the charger or an EVSE available or not",
               (Arg("Available", ua.VariantType.Boolean, "Operative (True) or inoperative"),
                Arg("Evse", ua.VariantType.UInt32, "EVSE, 0 for the whole charger")),
               lambda cid, a: SetAvailability(cid, a[0], _evse_or_none(a[1]))),
)  # fmt: skip
SITE_METHOD = MethodSpec("SetLimit", "An external limit on the site's import (negative or NaN lifts it)",
                         (Arg("LimitW", ua.VariantType.Double, "Limit in W"),), _site_limit)  # fmt: skip
RESULT = Arg("Result", ua.VariantType.String, "The answer, as JSON")


def _parse_args(spec: MethodSpec, args: list[ua.Variant]) -> list[Any] | ua.CallMethodResult:
    if len(args) < len(spec.inputs):
        return ua.CallMethodResult(StatusCode=ua.StatusCode(_S.BadArgumentsMissing))
    if len(args) > len(spec.inputs):
        return ua.CallMethodResult(StatusCode=ua.StatusCode(_S.BadTooManyArguments))
    values, results, failed = [], [], False
    for arg, variant in zip(spec.inputs, args, strict=True):
        try:
            values.append(arg.read(variant))
            results.append(GOOD)
        except ServiceError as e:
            values.append(None)
            results.append(ua.StatusCode(e.code))
            failed = True
    if failed:
        return ua.CallMethodResult(StatusCode=ua.StatusCode(_S.BadInvalidArgument), InputArgumentResults=results)
    return values


def _output(body: Any) -> list[ua.Variant]:
    return [ua.Variant(json.dumps(body, default=str), ua.VariantType.String)]


# -- users and sessions -------------------------------------------------------------------------------------


@dataclass
class _User(User):
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
                return _User(role=UserRole.User, name="anonymous", gateway_role=Role.guest)
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
        return _User(role=UserRole.User, name=username, gateway_role=role)

    def _refuse(self, username: str, reason: str) -> None:
        self.refused += 1
        log.warning("OPC UA login refused user=%s: %s", username, reason)


class TrustList:
    """Client certificates a technician approved: files in trusted/ (DER or PEM), or issued by a CA there."""

    def __init__(self, folder: Path) -> None:
        self.trusted_dir = folder / "trusted"
        self.rejected_dir = folder / "rejected"
        self._files: dict[str, tuple[tuple[int, int], x509.Certificate | None]] = {}
        self._fingerprints: set[bytes] = set()
        self._cas: list[x509.Certificate] = []
        self._basic = CertificateValidator(CertificateValidatorOptions.BASIC_VALIDATION)
        self.rejected = 0

    def prepare(self) -> None:
        self.trusted_dir.mkdir(parents=True, exist_ok=True)
        self.rejected_dir.mkdir(parents=True, exist_ok=True)

    def reload(self) -> None:
        """Read the trusted folder again; only files that changed are parsed."""
        files = {}
        try:
            entries = sorted(os.scandir(self.trusted_dir), key=lambda e: e.name)[:MAX_TRUSTED_FILES]
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if not entry.is_file() or Path(entry.name).suffix.lower() not in (".der", ".pem", ".crt", ".cer"):
                continue
            stat = entry.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            known = self._files.get(entry.path)
            files[entry.path] = known if known is not None and known[0] == stamp else (stamp, _read_cert(entry.path))
        self._files = files
        certs = [cert for _, cert in files.values() if cert is not None]
        self._fingerprints = {cert.fingerprint(hashes.SHA256()) for cert in certs}
        self._cas = [cert for cert in certs if _is_ca(cert)]

    def trusts(self, cert: x509.Certificate) -> bool:
        if cert.fingerprint(hashes.SHA256()) in self._fingerprints:
            return True
        return any(_issued_by(cert, ca) for ca in self._cas)

    async def validate(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        """asyncua's certificate validator, asked at CreateSession: valid now, for this client, and approved."""
        self.reload()
        await self._basic.validate(cert, app)
        self.check(cert)

    def check(self, cert: x509.Certificate) -> None:
        if not self.trusts(cert):
            self.keep_rejected(cert)
            raise ServiceError(_S.BadCertificateUntrusted)

    def keep_rejected(self, cert: x509.Certificate) -> None:
        """A copy for the technician to approve (move it to trusted/); the folder is bounded."""
        self.rejected += 1
        name = f"{_slug(_common_name(cert))}-{cert.fingerprint(hashes.SHA256()).hex()[:16]}.der"
        path = self.rejected_dir / name
        if path.exists():
            log.warning("OPC UA client certificate refused, waiting for approval: %s", path)
            return
        try:
            if sum(1 for _ in self.rejected_dir.iterdir()) >= MAX_REJECTED_FILES:
                log.warning("OPC UA client certificate refused; rejected/ is full, not kept subject=%s",
                            cert.subject.rfc4514_string())  # fmt: skip
                return
            temporary = path.with_suffix(".tmp")
            temporary.write_bytes(uacrypto.der_from_x509(cert))
            temporary.replace(path)
        except OSError as e:
            log.warning("OPC UA could not keep a refused certificate path=%s: %s", path, e)
            return
        log.warning("OPC UA client certificate refused and kept for approval: move %s to %s", path,
                    self.trusted_dir)  # fmt: skip


def _read_cert(path: str) -> x509.Certificate | None:
    try:
        data = Path(path).read_bytes()
        return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except (OSError, ValueError) as e:
        log.warning("OPC UA trusted certificate unreadable path=%s: %s", path, e)
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except Exception:  # noqa: BLE001 -- InvalidSignature, ValueError, TypeError: not issued by this one
        return False


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else "client"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:40] or "client"


def _format(path: Path) -> str:
    """PEM or DER by what the file holds, whatever its name ends with."""
    return "pem" if b"-----BEGIN" in path.read_bytes() else "der"


def _first_cert(der: bytes) -> bytes:
    """The leading certificate of a DER chain (a peer may send its chain)."""
    if len(der) > 4 and der[0] == 0x30 and der[1] == 0x82:
        return der[: int.from_bytes(der[2:4], "big") + 4]
    return der


class _Session(InternalSession):
    """A client's session: checks the channel at activation, routes writes and method calls through the door."""

    def __init__(self, bridge: OpcuaServer, *args: Any, **kwargs: Any) -> None:
        self.bridge = bridge
        super().__init__(*args, **kwargs)

    async def create_session(self, params: ua.CreateSessionParameters,
                             sockname: tuple[str, int] | None = None) -> ua.CreateSessionResult:  # fmt: skip
        await self.bridge.before_session()
        return await super().create_session(params, sockname)

    def activate_session(self, params: ua.ActivateSessionParameters,
                         peer_certificate: bytes | None) -> ua.ActivateSessionResult:  # fmt: skip
        self.bridge.check_channel(peer_certificate, params.UserIdentityToken)
        result = super().activate_session(params, peer_certificate)
        self.bridge.sessions.add(self)
        user = self.user
        log.info("OPC UA session activated user=%s role=%s peer=%s", user.name,
                 getattr(user, "gateway_role", Role.guest).name, self.name)  # fmt: skip
        return result

    async def close_session(self, delete_subs: bool = True) -> None:
        self.bridge.sessions.discard(self)
        await super().close_session(delete_subs)

    async def write(self, params: ua.WriteParameters) -> list[ua.StatusCode]:
        if not any(self.bridge.routes(item) for item in params.NodesToWrite):
            return await super().write(params)
        results = []
        for item in params.NodesToWrite:
            if self.bridge.routes(item):
                results.append(await self.bridge.write_limit(item, self.user))
            else:
                results.extend(await super().write(ua.WriteParameters(NodesToWrite=[item])))
        return results

    async def call(self, params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        token = _caller.set(self.user if isinstance(self.user, _User) else None)
        try:
            return await super().call(params)
        finally:
            _caller.reset(token)


class _InternalServer(InternalServer):
    def __init__(self, bridge: OpcuaServer, users: Users) -> None:
        super().__init__(user_manager=users)
        self.bridge = bridge

    def create_session(self, name: str, user: User = User(role=UserRole.Anonymous),  # noqa: B008 -- asyncua's
                       external: bool = False) -> InternalSession:  # fmt: skip
        if not external:
            return super().create_session(name, user, external)
        return _Session(self.bridge, self, self.aspace, self.subscription_service, name, user=user, external=True)


# -- the address space --------------------------------------------------------------------------------------

_MASK = ua.NodeAttributesMask
_VARIABLE_ATTRIBUTES = (_MASK.DisplayName | _MASK.Description | _MASK.Value | _MASK.DataType | _MASK.ValueRank
                        | _MASK.AccessLevel | _MASK.UserAccessLevel | _MASK.MinimumSamplingInterval
                        | _MASK.Historizing)  # fmt: skip
_PROPERTY_ATTRIBUTES = (_MASK.DisplayName | _MASK.Value | _MASK.DataType | _MASK.ValueRank | _MASK.AccessLevel
                        | _MASK.UserAccessLevel | _MASK.Historizing)  # fmt: skip
_OBJECT_ATTRIBUTES = _MASK.DisplayName | _MASK.EventNotifier
_READ = ua.AccessLevel.CurrentRead.mask
_READ_WRITE = ua.AccessLevel.CurrentRead.mask | ua.AccessLevel.CurrentWrite.mask


class Space:
    """The nodes of one running server: made as points appear (objects on the way), values written in batches."""

    def __init__(self, server: Server, idx: int, image: ProcessImage, sampling_ms: float,
                 charger_type: ua.NodeId, charger_methods: list[ua.NodeId]) -> None:  # fmt: skip
        self.server = server
        self.aspace = server.iserver.aspace
        self.idx = idx
        self.image = image
        self.sampling_ms = sampling_ms
        self.charger_type = charger_type
        self.charger_methods = charger_methods
        self.variables: dict[str, tuple[ua.NodeId, ua.VariantType]] = {}
        self.objects: dict[str, ua.NodeId] = {ROOT: ua.NodeId(ROOT, idx)}
        self._folders: set[str] = set()
        self.chargers: dict[ua.NodeId, str] = {}  # charger object -> charger id, for the methods
        self._pending: list[ua.AddNodesItem] = []
        self._links: list[ua.AddReferencesItem] = []
        self._fresh: list[ua.NodeId] = []
        self._failing: set[str] = set()  # points whose last write failed (logged once)
        self._constants: dict[tuple[Any, ...], Any] = {}  # attribute values shared by many nodes
        self.updates = 0

    def node_id(self, text: str) -> ua.NodeId:
        return ua.NodeId(text, self.idx)

    # making nodes

    def ensure(self, name: str, value: Any = None) -> tuple[ua.NodeId, ua.VariantType]:
        """The node of a point, queued for making (with the objects on its way) when it is new."""
        known = self.variables.get(name)
        if known is not None:
            return known
        segments = name.split("/")
        body = _body(name)
        parent = ROOT
        for i, browse in enumerate(_object_names(body)):
            path = f"{parent}.{browse}"
            if path not in self.objects:
                self._object(path, parent, browse, folder=i % 2 == 0,
                             charger=i == 1 and body[0] == "chargers")  # fmt: skip
                if i % 2:  # a member (a charger, an EVSE, a meter): its usual points, ahead of their values
                    prefix = "/".join(segments[: len(segments) - len(body) + i + 1])
                    for leaf in TEMPLATES.get(tuple(body[0:i:2]), ()):
                        self.ensure(f"{prefix}/{leaf}")
            parent = path
        known = self.variables.get(name)  # one of the usual points of an object just made
        if known is not None:
            return known
        unit = self.image.unit(name)
        vtype = variant_type(name, value, unit)
        node = self._variable(f"{parent}.{camel(body[-1])}", parent, camel(body[-1]), name, vtype, unit)
        self.variables[name] = (node, vtype)
        return node, vtype

    def _object(self, path: str, parent: str, browse: str, folder: bool, charger: bool) -> None:
        node = self.node_id(path)
        self.objects[path] = node
        if folder:
            self._folders.add(path)
        type_id = (ua.NodeId(ua.ObjectIds.FolderType) if folder else self.charger_type if charger
                   else ua.NodeId(ua.ObjectIds.BaseObjectType))  # fmt: skip
        attributes = ua.ObjectAttributes(DisplayName=ua.LocalizedText(browse))
        attributes.SpecifiedAttributes = _OBJECT_ATTRIBUTES
        self._pending.append(self._item(node, parent, browse, ua.NodeClass.Object, type_id, attributes))
        if charger:
            self.chargers[node] = browse
            self._links.extend(ua.AddReferencesItem(SourceNodeId=node, ReferenceTypeId=ua.NodeId(
                ua.ObjectIds.HasComponent), IsForward=True, TargetNodeId=method,
                TargetNodeClass=ua.NodeClass.Method) for method in self.charger_methods)  # fmt: skip

    def _variable(self, path: str, parent: str, browse: str, name: str, vtype: ua.VariantType,
                  unit: str | None) -> ua.NodeId:  # fmt: skip
        node = self.node_id(path)
        analog = unit is not None and vtype == ua.VariantType.Double
        kind = kind_of(name)
        attributes = ua.VariableAttributes(
            DisplayName=ua.LocalizedText(browse), Description=ua.LocalizedText(kind.description if kind else name),
            Value=ua.Variant(None, ua.VariantType.Null), DataType=ua.NodeId(vtype.value), ValueRank=-1,
            AccessLevel=_READ_WRITE if name in WRITABLE else _READ,
            UserAccessLevel=_READ_WRITE if name in WRITABLE else _READ,
            MinimumSamplingInterval=self.sampling_ms, Historizing=False,
        )  # fmt: skip
        attributes.SpecifiedAttributes = _VARIABLE_ATTRIBUTES
        type_id = ua.ObjectIds.AnalogItemType if analog else ua.ObjectIds.BaseDataVariableType
        self._pending.append(self._item(node, parent, browse, ua.NodeClass.Variable, ua.NodeId(type_id), attributes))
        if analog:
            assert unit is not None
            low, high = KNOWN_RANGES.get(unit, (math.nan, math.nan))
            self._property(f"{path}.EngineeringUnits", node, "EngineeringUnits", eu_information(unit),
                           ua.ObjectIds.EUInformation)  # fmt: skip
            self._property(f"{path}.EURange", node, "EURange", ua.Range(Low=low, High=high), ua.ObjectIds.Range)
        self._fresh.append(node)
        return node

    def _property(self, path: str, parent: ua.NodeId, browse: str, value: Any, data_type: int) -> None:
        attributes = ua.VariableAttributes(
            DisplayName=ua.LocalizedText(browse), Value=ua.Variant(value, ua.VariantType.ExtensionObject),
            DataType=ua.NodeId(data_type), ValueRank=-1, AccessLevel=_READ, UserAccessLevel=_READ, Historizing=False,
        )  # fmt: skip
        attributes.SpecifiedAttributes = _PROPERTY_ATTRIBUTES
        item = ua.AddNodesItem(RequestedNewNodeId=self.node_id(path), BrowseName=ua.QualifiedName(browse, 0),
                               NodeClass=ua.NodeClass.Variable, ParentNodeId=parent,
                               ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasProperty),
                               TypeDefinition=ua.NodeId(ua.ObjectIds.PropertyType),
                               NodeAttributes=attributes)  # fmt: skip
        self._pending.append(item)

    def _item(self, node: ua.NodeId, parent: str, browse: str, node_class: ua.NodeClass, type_id: ua.NodeId,
              attributes: Any) -> ua.AddNodesItem:  # fmt: skip
        parent_id = self.objects[parent]
        reference = ua.ObjectIds.Organizes if parent in self._folders else ua.ObjectIds.HasComponent
        return ua.AddNodesItem(RequestedNewNodeId=node, BrowseName=ua.QualifiedName(browse, self.idx),
                               NodeClass=node_class, ParentNodeId=parent_id, ReferenceTypeId=ua.NodeId(reference),
                               TypeDefinition=type_id, NodeAttributes=attributes)  # fmt: skip

    async def flush_when_full(self) -> None:
        """Make what is queued once it is a batch: the loop runs between batches, even when thousands are new."""
        if len(self._pending) >= ADD_NODES_BATCH:
            await self.flush()

    async def flush(self) -> None:
        """Make the queued nodes, in batches between which the loop runs; new variables wait for their value."""
        # All taken at once: a write that shows a value meanwhile (Site.LimitW) must find nothing half made here.
        pending, links, fresh = self._pending, self._links, self._fresh
        self._pending, self._links, self._fresh = [], [], []
        isession = self.server.iserver.isession
        for start in range(0, len(pending), ADD_NODES_BATCH):
            batch = pending[start : start + ADD_NODES_BATCH]
            results = await isession.add_nodes(batch)
            failed = [(i, r.StatusCode) for i, r in zip(batch, results, strict=True) if not r.StatusCode.is_good()]
            if failed:  # a bug (two points with one node id, say): said once per batch, the rest goes on
                log.error("OPC UA nodes not made count=%d first=%s status=%s", len(failed),
                          failed[0][0].RequestedNewNodeId.to_string(), failed[0][1].name)  # fmt: skip
            self._share_constants(item.RequestedNewNodeId for item in batch)
            await asyncio.sleep(0)
        for link, status in zip(links, await isession.add_references(links) if links else [], strict=True):
            if not status.is_good():
                log.error("OPC UA reference not made node=%s status=%s", link.SourceNodeId.to_string(), status.name)
        waiting = ua.DataValue(StatusCode=WAITING, ServerTimestamp=datetime.now(UTC))
        for node in fresh:
            await self.aspace.write_attribute_value(node, ua.AttributeIds.Value, waiting)

    def _share_constants(self, nodes: Iterable[ua.NodeId]) -> None:
        """asyncua keeps an object per attribute of every node; those equal on thousands of nodes (data type, access
        level, value rank, descriptions...) share one, which saves ~40% of the address space's memory (a Pi has little,
        PRODUCT.md §7). They are never written: clients may only write Values, and only Site.LimitW's."""
        for node in nodes:
            data = self.aspace.get(node)
            for attribute, held in data.attributes.items() if data is not None else ():
                if attribute in (ua.AttributeIds.NodeId, ua.AttributeIds.Value) or held.value is None:
                    continue
                variant = held.value.Value
                try:
                    key = (attribute, variant.VariantType, _hashable(variant.Value))
                    data.attributes[attribute] = self._constants.setdefault(key, held)
                except TypeError:  # a value that cannot be a key: kept as it is
                    continue

    # values

    async def apply(self, changes: dict[str, Point]) -> None:
        """Write changed points (making the nodes of new ones first); a failing node is logged, never fatal."""
        for name, point in changes.items():
            if name not in self.variables:
                self.ensure(name, point.value)
                await self.flush_when_full()
        await self.flush()
        now = datetime.now(UTC)
        for count, (name, point) in enumerate(changes.items(), 1):
            await self._write(name, point, now)
            if count % ADD_NODES_BATCH == 0:  # the whole image at a (re)start: let the loop run in between
                await asyncio.sleep(0)

    async def show(self, name: str) -> None:
        """A point's value now (after a command changed it), without waiting for the feed."""
        point = self.image.get(name)
        if point is not None:
            await self.apply({name: point})

    async def _write(self, name: str, point: Point, now: datetime) -> None:
        node, vtype = self.variables[name]
        problem = None
        try:
            value = data_value(point, vtype, now)
        except (ValueError, TypeError, OverflowError) as e:  # not a value of the node's type: shown as such
            value = FrozenValue(StatusCode=ua.StatusCode(_S.BadTypeMismatch), SourceTimestamp=point.ts,
                                ServerTimestamp=now)  # fmt: skip
            problem = f"{type(e).__name__}: {e}"
        try:
            status = await self.aspace.write_attribute_value(node, ua.AttributeIds.Value, value)
        except Exception as e:  # noqa: BLE001 -- one node's trouble must not keep the others from their values
            status, problem = ua.StatusCode(_S.BadInternalError), f"{type(e).__name__}: {e}"
        if problem is None and status.is_good():
            self.updates += 1
            self._failing.discard(name)
        else:
            self._failed(name, problem or status.name)

    def _failed(self, name: str, reason: str) -> None:
        if name not in self._failing:
            self._failing.add(name)
            log.warning("OPC UA node not updated point=%s: %s", name, reason)


def _hashable(value: Any) -> Any:
    if isinstance(value, ua.LocalizedText):
        return ("text", value.Locale, value.Text)
    if isinstance(value, ua.QualifiedName):
        return ("name", value.NamespaceIndex, value.Name)
    return value


# -- the server ---------------------------------------------------------------------------------------------


class OpcuaServer:
    def __init__(self, settings: Settings, site: Site, image: ProcessImage, commands: Commands, store: Store) -> None:
        assert settings.opcua is not None
        self.settings = settings
        self.cfg = settings.opcua
        self.site = site
        self.image = image
        self.commands = commands
        self.store = store
        self.namespace = f"urn:evedge:{settings.gateway.id}"
        self.application_uri = f"urn:evedge:{settings.gateway.id}:server"
        self.folder = settings.gateway.state_dir / "opcua"
        self.users = Users(store, self.cfg.allow_anonymous)
        self.trust = TrustList(self.folder)
        self.sessions: set[_Session] = set()
        self.space: Space | None = None
        self.port: int | None = None
        self._status = "starting"
        self._error: str | None = None
        self._updates_before = self._coalesced_before = 0
        self._coalesced = 0
        self.events = 0
        self.events_dropped = 0

    # -- running ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        self._status, self._error = "starting", None
        server = Server(iserver=_InternalServer(self, self.users))
        started = False
        try:
            space, generators = await self._build(server)
            await server.start()
            started = True
            self.port = server.bserver.port if server.bserver else None
            self._status = "ok"
            log.info("OPC UA server listening endpoint=%s none=%s anonymous=%s nodes=%d", self.endpoint,
                     self.cfg.allow_none, self.cfg.allow_anonymous, len(space.variables))  # fmt: skip
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._follow_points(space), name="opcua-points")
                tasks.create_task(self._follow_events(generators, space), name="opcua-events")
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._status, self._error = "error", f"{type(e).__name__}: {e}"
            raise
        finally:
            self.sessions.clear()
            if self.space is not None:
                self._updates_before += self.space.updates
            self.space = None
            if started:
                await self._stop(server)

    async def _stop(self, server: Server) -> None:
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await server.stop()
        except Exception as e:  # noqa: BLE001 -- stopping is best effort; the sockets close with the process
            log.warning("OPC UA server did not stop cleanly: %s", e)
        log.info("OPC UA server stopped")

    async def _build(self, server: Server) -> tuple[Space, list[EventGenerator]]:
        await server.init()
        iserver = server.iserver
        iserver.max_connections = MAX_CONNECTIONS
        iserver.max_subscriptions = MAX_SUBSCRIPTIONS
        iserver.max_monitored_item_queue_size = MAX_ITEM_QUEUE
        iserver.max_pending_activation_seconds = PENDING_ACTIVATION_S
        server.set_endpoint(self._url(*split_listen(self.cfg.listen)))
        server.set_server_name(f"evedge {self.settings.gateway.id}")
        server.product_uri = "urn:evedge"
        server.manufacturer_name = "evedge"
        await self._load_certificate(server)
        server.set_security_policy(self._policies())
        tokens: list[type] = [ua.UserNameIdentityToken]
        if self.cfg.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        self.trust.prepare()
        server.set_certificate_validator(self.trust.validate)
        idx = await server.register_namespace(self.namespace)
        charger_type, methods = await self._charger_type(server, idx)
        space = Space(server, idx, self.image, self.cfg.min_interval_s * 1000, charger_type, methods)
        site = await self._site_object(server, idx)
        generators = await self._event_generators(server, idx, site)
        await self._prepare(space)
        await space.flush()
        self.space = space
        return space, generators

    def _url(self, host: str, port: int) -> str:
        return f"opc.tcp://{f'[{host}]' if ':' in host else host}:{port}/{PATH}"

    @property
    def endpoint(self) -> str:
        host, port = split_listen(self.cfg.listen)
        return self._url(host, self.port or port)

    def _policies(self) -> list[ua.SecurityPolicyType]:
        policies = [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt, ua.SecurityPolicyType.Basic256Sha256_Sign,
                    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
                    ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign]  # fmt: skip
        return policies + ([ua.SecurityPolicyType.NoSecurity] if self.cfg.allow_none else [])

    async def _load_certificate(self, server: Server) -> None:
        cert, key = self.cfg.certificate, self.cfg.private_key
        if cert is None or key is None:
            key, cert = self.folder / "server-key.pem", self.folder / "server-cert.der"
            self.folder.mkdir(parents=True, exist_ok=True)
            before = cert.read_bytes() if cert.exists() else None
            # Made, or made again when missing, expired, or for another host name or gateway id.
            await setup_self_signed_certificate(
                key, cert, self.application_uri, socket.gethostname(), [ExtendedKeyUsageOID.SERVER_AUTH],
                {"commonName": f"evedge {self.settings.gateway.id}", "organizationName": "evedge"},
            )  # fmt: skip
            os.chmod(key, 0o600)
            if before is None:
                log.info("OPC UA server certificate made: %s", cert)
            elif cert.read_bytes() != before:
                log.warning("OPC UA server certificate renewed (expired, or another host name): %s -- clients that "
                            "trusted the old one must trust this one", cert)  # fmt: skip
        await server.load_certificate(str(cert), _format(cert))
        await server.load_private_key(str(key), format=_format(key))
        await server.set_application_uri(self._uri_of(server.iserver.certificate))

    def _uri_of(self, cert: x509.Certificate) -> str:
        """The application URI must be the certificate's: a configured certificate says what it is."""
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = names.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        if self.application_uri in uris or not uris:
            return self.application_uri
        log.info("OPC UA application URI taken from the certificate uri=%s", uris[0])
        return uris[0]

    async def _prepare(self, space: Space) -> None:
        """The configured site, chargers, EVSEs and meters, ahead of their values (with their usual points)."""
        names = [f"site/{leaf}" for leaf in SITE_POINTS]
        for charger in list(self.site.chargers.values()):
            names.append(f"chargers/{charger.id}/online")
            names += [evse_point(charger.id, n, "status") for n in sorted(charger.evses)]
        names += [f"meters/{meter}/power_w" for meter in self.site.meters]
        for name in names:
            space.ensure(name)
            await space.flush_when_full()

    async def _charger_type(self, server: Server, idx: int) -> tuple[ua.NodeId, list[ua.NodeId]]:
        base = server.get_node(ua.ObjectIds.BaseObjectType)
        charger_type = await base.add_object_type(ua.NodeId("ChargerType", idx), ua.QualifiedName("ChargerType", idx))
        methods = []
        for spec in CHARGER_METHODS:
            method = await charger_type.add_method(
                ua.NodeId(f"ChargerType.{spec.name}", idx), ua.QualifiedName(spec.name, idx),
                self._method(spec, charger=True), [a.argument() for a in spec.inputs], [RESULT.argument()],
            )  # fmt: skip
            await method.write_attribute(ua.AttributeIds.Description, ua.DataValue(ua.LocalizedText(spec.description)))
            await method.set_modelling_rule(True)
            methods.append(method.nodeid)
        return charger_type.nodeid, methods

    async def _site_object(self, server: Server, idx: int) -> ua.NodeId:
        site = await server.nodes.objects.add_object(ua.NodeId(ROOT, idx), ua.QualifiedName(ROOT, idx))
        await site.add_method(ua.NodeId(f"{ROOT}.{SITE_METHOD.name}", idx), ua.QualifiedName(SITE_METHOD.name, idx),
                              self._method(SITE_METHOD, charger=False), [a.argument() for a in SITE_METHOD.inputs],
                              [RESULT.argument()])  # fmt: skip
        await server.nodes.server.add_reference(site.nodeid, ua.ObjectIds.HasNotifier, bidirectional=False)
        return site.nodeid

    async def _event_generators(self, server: Server, idx: int, site: ua.NodeId) -> list[EventGenerator]:
        base = server.get_node(ua.ObjectIds.BaseEventType)
        etype = await base.add_object_type(ua.NodeId("EvedgeEventType", idx),
                                           ua.QualifiedName("EvedgeEventType", idx))  # fmt: skip
        for name, description in (("Kind", "What happened: transaction_started, status, failsafe, ..."),
                                  ("Data", "The event's details, as JSON")):  # fmt: skip
            prop = await etype.add_property(ua.NodeId(f"EvedgeEventType.{name}", idx), ua.QualifiedName(name, idx),
                                            "", ua.VariantType.String)  # fmt: skip
            await prop.write_attribute(ua.AttributeIds.Description, ua.DataValue(ua.LocalizedText(description)))
            await prop.set_modelling_rule(True)
        return [await server.get_event_generator(etype, site),
                await server.get_event_generator(etype, ua.ObjectIds.Server)]  # fmt: skip

    async def _follow_points(self, space: Space) -> None:
        feed = self.image.feed()
        try:
            await self._apply(space, dict(self.image.items()))
            while True:
                changes = await feed.get()
                await self._apply(space, changes)
                self._coalesced = self._coalesced_before + feed.coalesced
                raise_if_cancelled()
                await asyncio.sleep(self.cfg.min_interval_s)  # changes meanwhile coalesce in the feed
        finally:
            self._coalesced_before += feed.coalesced
            feed.close()

    async def _apply(self, space: Space, changes: dict[str, Point]) -> None:
        try:
            await space.apply(changes)
        except Exception:  # a bug in one batch must not stop the tags: the next batch tries again
            log.exception("OPC UA update failed points=%d", len(changes))

    async def _follow_events(self, generators: list[EventGenerator], space: Space) -> None:
        listener = self.store.events.listen(EVENT_BACKLOG)
        try:
            while True:
                for event in await listener.get():
                    try:
                        await self._emit(generators, space, event)
                    except Exception:
                        log.exception("OPC UA event not sent kind=%s", event.kind)
                self.events_dropped = listener.dropped
                raise_if_cancelled()
        finally:
            listener.close()

    async def _emit(self, generators: list[EventGenerator], space: Space, event: Event) -> None:
        message, severity = describe(event)
        charger = event.payload.get("charger")
        source = space.objects.get(f"{ROOT}.Chargers.{charger}") if isinstance(charger, str) else None
        for generator in generators:
            fields = generator.event
            fields.Kind = event.kind
            fields.Data = json.dumps(event.payload, default=str)
            fields.Severity = severity
            fields.SourceNode = source if source is not None else space.objects[ROOT]
            fields.SourceName = charger if source is not None else ROOT
            await generator.trigger(time_attr=event.ts, message=message)
        self.events += 1

    # -- sessions -----------------------------------------------------------------------------------------

    async def before_session(self) -> None:
        """At every CreateSession: the store's users and the technician's approvals, as they are now."""
        self.trust.reload()
        await self.users.refresh()

    def check_channel(self, peer_certificate: bytes | None, token: Any) -> None:
        """At ActivateSession: the secure channel's own certificate must be trusted; no channel security only when
        allowed (asyncua lets a client open one even when no None endpoint is offered), and no clear passwords."""
        if not peer_certificate:  # None or b'': a channel without security
            if not self.cfg.allow_none:
                log.warning("OPC UA session refused: no security on the channel (allow_none is off)")
                raise ServiceError(_S.BadSecurityModeRejected)
            if isinstance(token, ua.UserNameIdentityToken) and not token.EncryptionAlgorithm:
                log.warning("OPC UA session refused: a password in clear user=%s", token.UserName)
                raise ServiceError(_S.BadIdentityTokenRejected)
            return
        try:
            cert = x509.load_der_x509_certificate(_first_cert(peer_certificate))
        except ValueError:
            raise ServiceError(_S.BadCertificateInvalid) from None
        self.trust.check(cert)

    def routes(self, item: ua.WriteValue) -> bool:
        space = self.space
        limit = space.variables.get(LIMIT_POINT) if space is not None else None
        return limit is not None and item.NodeId == limit[0] and item.AttributeId == ua.AttributeIds.Value

    async def write_limit(self, item: ua.WriteValue, user: User) -> ua.StatusCode:
        """A client's write to Site.LimitW: an external site limit through the door (negative or NaN lifts it)."""
        if item.IndexRange:
            return ua.StatusCode(_S.BadWriteNotSupported)
        variant = item.Value.Value if item.Value is not None else None
        if variant is None or variant.VariantType not in _NUMBERS:
            return ua.StatusCode(_S.BadTypeMismatch)
        limit = float(variant.Value)
        command = SetSiteLimit(None if math.isnan(limit) or limit < 0 else limit, source="opcua")
        status, _ = await self._execute(command, user if isinstance(user, _User) else None)
        if status.is_good() and self.space is not None:
            await self.space.show(LIMIT_POINT)
        return status

    def _method(self, spec: MethodSpec, charger: bool) -> Callable[..., Awaitable[Any]]:
        async def call(parent: ua.NodeId, *args: ua.Variant) -> Any:
            space = self.space
            target = "site"
            if charger:
                target = space.chargers.get(parent) if space is not None else None
                if target is None:
                    return ua.StatusCode(_S.BadMethodInvalid)
            values = _parse_args(spec, list(args))
            if isinstance(values, ua.CallMethodResult):
                return values
            try:
                command = spec.build(target, values)
            except ValueError as e:
                refusal = _output({"error": "invalid", "message": str(e)})
                return ua.CallMethodResult(StatusCode=ua.StatusCode(_S.BadInvalidArgument), OutputArguments=refusal)
            status, body = await self._execute(command, _caller.get())
            return body if status.is_good() else ua.CallMethodResult(StatusCode=status, OutputArguments=body)

        return call

    async def _execute(self, command: Command, user: _User | None) -> tuple[ua.StatusCode, list[ua.Variant]]:
        if user is None:
            return ua.StatusCode(_S.BadUserAccessDenied), _output({"error": "forbidden", "message": "no user"})
        actor = Actor(user.name or "anonymous", user.gateway_role, "opcua")
        try:
            result = await self.commands.execute(command, actor)
        except CommandError as e:
            return command_status(e), _output(e.as_json())
        except Exception as e:  # noqa: BLE001 -- the door has logged and audited it; the client gets a status
            return ua.StatusCode(_S.BadInternalError), _output({"error": "internal", "message": type(e).__name__})
        return GOOD, _output(result)

    # -- health -------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        space = self.space
        body: dict[str, Any] = {
            "status": self._status, "endpoint": self.endpoint, "sessions": len(self.sessions),
            "updates": self._updates_before + (space.updates if space is not None else 0),
            "coalesced": self._coalesced, "nodes": len(space.variables) if space is not None else 0,
            "events": self.events, "events_dropped": self.events_dropped,
            "refused_logins": self.users.refused, "refused_certificates": self.trust.rejected,
        }  # fmt: skip
        if self._error is not None:
            body["error"] = self._error
        return body
