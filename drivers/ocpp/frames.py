"""OCPP-J framing, without sockets: what a raw frame is, and the CALLERROR a bad one deserves.

Both versions share the RPC framework but spell some error codes differently (OCPP-J 1.6 keeps the historic
"FormationViolation" and "OccurenceConstraintViolation"; 2.0.1 renamed them and added "RpcFrameworkError" and
"MessageTypeNotSupported"). Code here uses the 2.0.1 names; :func:`error_code` gives the wire spelling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ocpp.v16.enums import Action as Action16
from ocpp.v201.enums import Action as Action201

from gateway.commands import SECRET_NAME, redact
from gateway.strictjson import loads

V16, V201 = "1.6", "2.0.1"
# Offered subprotocol -> version; order is our preference when a charger offers both.
SUBPROTOCOLS = {"ocpp2.0.1": V201, "ocpp1.6": V16}
UNKNOWN_ID = "-1"  # the id to answer with when the offending message's id cannot be read
MAX_ID_LENGTH = 36  # "to allow for GUIDs"
MAX_DESCRIPTION = 255

_DIALECT_16 = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
    "RpcFrameworkError": "FormationViolation",
    "MessageTypeNotSupported": "NotSupported",
}
_DIALECT_201 = {"FormationViolation": "FormatViolation", "OccurenceConstraintViolation": "OccurrenceConstraintViolation"}

# Every action a charger may send to the central system, per version (the spec's direction).
FROM_CHARGER = {
    V16: frozenset({
        "Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification",
        "FirmwareStatusNotification", "Heartbeat", "MeterValues", "StartTransaction", "StatusNotification",
        "StopTransaction", "SecurityEventNotification", "SignCertificate", "SignedFirmwareStatusNotification",
        "LogStatusNotification",
    }),
    V201: frozenset({
        "Authorize", "BootNotification", "ClearedChargingLimit", "DataTransfer", "FirmwareStatusNotification",
        "Get15118EVCertificate", "GetCertificateStatus", "Heartbeat", "LogStatusNotification", "MeterValues",
        "NotifyChargingLimit", "NotifyCustomerInformation", "NotifyDisplayMessages", "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule", "NotifyEvent", "NotifyMonitoringReport", "NotifyReport",
        "PublishFirmwareStatusNotification", "ReportChargingProfiles", "ReservationStatusUpdate",
        "SecurityEventNotification", "SignCertificate", "StatusNotification", "TransactionEvent",
    }),
}  # fmt: skip
_KNOWN = {V16: frozenset(a.value for a in Action16), V201: frozenset(a.value for a in Action201)}
# Every action the central system may send to a charger: the rest of each version's actions, and DataTransfer,
# which goes both ways.
TO_CHARGER = {v: (_KNOWN[v] - FROM_CHARGER[v]) | {"DataTransfer"} for v in (V16, V201)}


@dataclass(frozen=True, slots=True)
class Call:
    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    unique_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallError:
    unique_id: str
    code: str
    description: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame that is not a valid OCPP-J message; ``reply`` is the CALLERROR to send, if any."""

    reason: str
    reply: str | None


Frame = Call | CallResult | CallError | Malformed


def error_code(code: str, version: str) -> str:
    """The wire spelling of an RPC error code in this OCPP version."""
    return (_DIALECT_16 if version == V16 else _DIALECT_201).get(code, code)


def schema_error_code(code: str, cause: str, version: str) -> str:
    """The code for a payload that breaks the schema. The ``ocpp`` library answers a missing required field with
    ProtocolError, which is 1.6's "payload is incomplete"; 2.0.1 gives ProtocolError to a frame that does not
    follow the PDU structure and calls a field that must occur and does not an OccurrenceConstraintViolation."""
    if version == V201 and code == "ProtocolError" and "is a required property" in cause:
        return "OccurrenceConstraintViolation"
    return code


def call_error(unique_id: str, code: str, description: str, version: str, details: dict | None = None) -> str:
    return json.dumps(
        [4, unique_id, error_code(code, version), description[:MAX_DESCRIPTION], details or {}],
        separators=(",", ":"),
    )


def parse(raw: str | bytes, version: str) -> Frame:
    """Classify one received frame. Never raises."""
    if isinstance(raw, bytes):
        return _bad("binary frame; OCPP-J uses text frames", UNKNOWN_ID, "RpcFrameworkError", version)
    try:
        msg = loads(raw)
    except (ValueError, RecursionError):
        return _bad("not JSON", UNKNOWN_ID, "RpcFrameworkError", version)
    if not isinstance(msg, list) or not msg:
        return _bad("not a JSON array", UNKNOWN_ID, "RpcFrameworkError", version)
    unique_id = msg[1] if len(msg) > 1 and isinstance(msg[1], str) else None
    reply_id = unique_id if unique_id is not None and len(unique_id) <= MAX_ID_LENGTH else UNKNOWN_ID
    kind = msg[0]
    if type(kind) is not int:
        return _bad("message type is not a number", reply_id, "RpcFrameworkError", version)
    if kind == 2:
        if len(msg) != 4 or unique_id is None or not isinstance(msg[2], str):
            return _bad("a CALL is [2, id, action, payload]", reply_id, "RpcFrameworkError", version)
        if reply_id == UNKNOWN_ID:
            return _bad(f"message id longer than {MAX_ID_LENGTH}", UNKNOWN_ID, "RpcFrameworkError", version)
        if not isinstance(msg[3], dict):
            return _bad("the payload of a CALL is a JSON object", unique_id, "FormatViolation", version)
        return Call(unique_id, msg[2], msg[3])
    if kind == 3:
        if len(msg) != 3 or unique_id is None or not isinstance(msg[2], dict):
            return Malformed("a CALLRESULT is [3, id, payload]", None)  # a response is never answered
        return CallResult(unique_id, msg[2])
    if kind == 4:
        if len(msg) != 5 or unique_id is None or not isinstance(msg[2], str):
            return Malformed("a CALLERROR is [4, id, code, description, details]", None)
        details = msg[4] if isinstance(msg[4], dict) else {}
        return CallError(unique_id, msg[2], str(msg[3])[:MAX_DESCRIPTION], details)
    return _bad(f"message type {kind} is not supported", reply_id, "MessageTypeNotSupported", version)


def unknown_action(call: Call, version: str, handled: frozenset[str] | set[str]) -> str | None:
    """The CALLERROR for an action we do not route; None when it is routed.

    NotImplemented: the action is not known in this version; NotSupported: known (recognized), not handled.
    """
    if call.action in handled:
        return None
    if call.action in _KNOWN[version]:
        return call_error(call.unique_id, "NotSupported", f"{call.action} is not supported", version)
    return call_error(call.unique_id, "NotImplemented", f"{call.action} is not a known action", version)


def _bad(reason: str, reply_id: str, code: str, version: str) -> Malformed:
    return Malformed(reason, call_error(reply_id, code, reason, version))


def for_log(raw: str | bytes) -> str:
    """A frame as the wire log may show it: secrets a charger is given or sends (ChangeConfiguration
    AuthorizationKey, SetVariables BasicAuthPassword, ...) masked as in the audit log."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    if SECRET_NAME.search(text) is None:
        return text
    try:
        return json.dumps(redact(json.loads(text)))
    except ValueError:
        return "<a frame naming a secret, not JSON: not shown>"
