"""Acting from OPC UA: the methods and the writes to Site.LimitW, each a typed command through the command door.

The door (``commands.execute``) checks the session's user's role and audits; the answer is a JSON string, a refusal
a Bad status code with its JSON reason in the output (the table is in the package's docstring).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User

from bridges.opcua_server.names import ROOT
from bridges.opcua_server.space import LIMIT_POINT, Space
from bridges.opcua_server.users import GatewayUser
from bridges.opcua_server.values import GOOD
from gateway.auth import Actor
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

_S = ua.StatusCodes
COMMAND_STATUS = {
    "forbidden": _S.BadUserAccessDenied, "unknown_target": _S.BadInvalidArgument, "invalid": _S.BadInvalidArgument,
    "offline": _S.BadNoCommunication, "timeout": _S.BadTimeout, "busy": _S.BadTooManyOperations,
    "rejected": _S.BadRequestNotAllowed, "call_error": _S.BadDeviceFailure, "bad_answer": _S.BadDeviceFailure,
    "unsupported": _S.BadNotSupported, "disabled": _S.BadConfigurationError, "superseded": _S.BadRequestCancelledByRequest,
}  # fmt: skip

# The user of the session whose method call is running (asyncua does not hand it to the method).
caller: contextvars.ContextVar[GatewayUser | None] = contextvars.ContextVar("opcua_caller", default=None)


def command_status(error: CommandError) -> ua.StatusCode:
    return ua.StatusCode(COMMAND_STATUS.get(error.code, _S.BadInternalError))


# -- the methods --------------------------------------------------------------------------------------------

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


def _site_limit(limit: float | None, valid_s: float | None = None) -> SetSiteLimit:
    """An external limit on the site's import (None lifts it): the command refuses a negative or NaN one, as from
    every door -- a sign error in a BMS must never lift the cap."""
    return SetSiteLimit(limit, source="opcua", valid_s=valid_s or None)


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
SITE_METHODS = (
    MethodSpec("SetLimit", "An external limit on the site's import, until lifted",
               (Arg("LimitW", ua.VariantType.Double, "Limit in W, from 0"),), lambda _, a: _site_limit(a[0])),
    MethodSpec("SetLimitFor", "An external limit on the site's import that lapses unless set again in time",
               (Arg("LimitW", ua.VariantType.Double, "Limit in W, from 0"),
                Arg("ValidS", ua.VariantType.Double, "It lapses after this many seconds")),
               lambda _, a: _site_limit(a[0], a[1])),
    MethodSpec("LiftLimit", "Lift the external limit set over OPC UA", (), lambda _, a: _site_limit(None)),
)  # fmt: skip
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


# -- the door -----------------------------------------------------------------------------------------------


class Door:
    """The method nodes, and what clients call and write on them, through ``commands.execute``."""

    def __init__(self, commands: Commands) -> None:
        self.commands = commands
        self.space: Space | None = None  # the running server's nodes, None while it is stopped

    async def add_charger_type(self, server: Server, idx: int) -> tuple[ua.NodeId, list[ua.NodeId]]:
        """ChargerType and its methods: one set of method nodes that every charger object references."""
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

    async def add_site(self, server: Server, idx: int) -> ua.NodeId:
        """The Site object, with Site.SetLimit, a notifier of the Server object (its events are the site's)."""
        site = await server.nodes.objects.add_object(ua.NodeId(ROOT, idx), ua.QualifiedName(ROOT, idx))
        for spec in SITE_METHODS:
            await site.add_method(ua.NodeId(f"{ROOT}.{spec.name}", idx), ua.QualifiedName(spec.name, idx),
                                  self._method(spec, charger=False), [a.argument() for a in spec.inputs],
                                  [RESULT.argument()])  # fmt: skip
        await server.nodes.server.add_reference(site.nodeid, ua.ObjectIds.HasNotifier, bidirectional=False)
        return site.nodeid

    def routes(self, item: ua.WriteValue) -> bool:
        space = self.space
        limit = space.variables.get(LIMIT_POINT) if space is not None else None
        return limit is not None and item.NodeId == limit[0] and item.AttributeId == ua.AttributeIds.Value

    async def write_limit(self, item: ua.WriteValue, user: User) -> ua.StatusCode:
        """A client's write to Site.LimitW: an external site limit through the door (a negative or NaN one is
        refused: lift it with the LiftLimit method)."""
        if item.IndexRange:
            return ua.StatusCode(_S.BadWriteNotSupported)
        variant = item.Value.Value if item.Value is not None else None
        if variant is None or variant.VariantType not in _NUMBERS:
            return ua.StatusCode(_S.BadTypeMismatch)
        try:
            command = _site_limit(float(variant.Value))
        except CommandError as e:
            return command_status(e)
        status, _ = await self._execute(command, user if isinstance(user, GatewayUser) else None)
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
            except CommandError as e:  # the command refused its own values
                return ua.CallMethodResult(StatusCode=command_status(e), OutputArguments=_output(e.as_json()))
            except ValueError as e:
                refusal = _output({"error": "invalid", "message": str(e)})
                return ua.CallMethodResult(StatusCode=ua.StatusCode(_S.BadInvalidArgument), OutputArguments=refusal)
            status, body = await self._execute(command, caller.get())
            return body if status.is_good() else ua.CallMethodResult(StatusCode=status, OutputArguments=body)

        return call

    async def _execute(self, command: Command, user: GatewayUser | None) -> tuple[ua.StatusCode, list[ua.Variant]]:
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
