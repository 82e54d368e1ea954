"""Alarms as OPC UA Alarms & Conditions (Part 9): AlarmConditionType events, Acknowledge, ConditionRefresh.

Each alarm that leaves the normal state gets a condition object, ``Site.Conditions.{alarm id}`` (its ConditionId; the
counters are the variables of ``Site.Alarms``), and every change of it is an AlarmConditionType event from the Site
object and from the Server object (SourceNode: the charger's object when the
alarm is a charger's, else Site; InputNode: the point's variable) with ActiveState, AckedState, SuppressedState,
OutOfServiceState, SuppressedOrShelved, Severity (level x 1000 / 30), Message, Comment, ClientUserId and Retain
(true while the alarm is not normal). asyncua keeps the retained ones for ConditionRefresh.

asyncua only emits events: Acknowledge is ours. A client calls AcknowledgeableConditionType.Acknowledge on the
ConditionId with the EventId of the condition's latest event and a comment; it goes through the command door as
the session's user (operators and up), like every other action. An older EventId is BadEventIdUnknown, an alarm
with nothing to acknowledge BadConditionBranchAlreadyAcked.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from asyncua import Server, ua
from asyncua.server.event_generator import EventGenerator

from bridges.opcua_server.methods import Door, caller
from bridges.opcua_server.names import ROOT
from bridges.opcua_server.space import Space
from gateway.alarms import AcknowledgeAlarm, AlarmList
from gateway.clock import parse_iso
from gateway.commands import CommandError

log = logging.getLogger(__name__)

_S = ua.StatusCodes
ACKNOWLEDGE = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge)
FOLDER = f"{ROOT}.Conditions"


def _two_state(true: str, false: str, value: bool) -> ua.LocalizedText:
    return ua.LocalizedText(true if value else false)


class Conditions:
    """The condition objects, the events and the Acknowledge method of one running server."""

    def __init__(self, server: Server, idx: int, space: Space, door: Door, alarms: AlarmList) -> None:
        self.server = server
        self.idx = idx
        self.space = space
        self.door = door
        self.alarms = alarms
        self.nodes: dict[str, ua.NodeId] = {}  # alarm id -> condition object
        self.by_node: dict[ua.NodeId, str] = {}
        self.last_event: dict[str, set[bytes]] = {}  # alarm id -> EventIds of its latest event (Site's, Server's)
        self.events = 0
        self._generators: list[tuple[EventGenerator, Any]] = []  # with their own event as a template
        self._folder: Any = None

    async def build(self) -> None:
        """The Site.Alarms folder, the event generator and our Acknowledge."""
        site = self.server.get_node(self.space.objects[ROOT])
        self._folder = await site.add_folder(ua.NodeId(FOLDER, self.idx), ua.QualifiedName("Conditions", self.idx))
        for emitter in (site, self.server.nodes.server):
            generator = await self.server.get_event_generator(ua.ObjectIds.AlarmConditionType, emitter)
            self._generators.append((generator, generator.event))
        self.server.iserver.isession.add_method_callback(ACKNOWLEDGE, self._acknowledge)

    async def follow(self) -> None:
        feed = self.alarms.feed()
        try:
            await self.alarms.ready.wait()
            for record in self.alarms.active():
                await self.emit(record)
            while True:
                for record in await feed.get():
                    if record["state"] != "normal" or record["id"] in self.last_event:
                        try:
                            await self.emit(record)
                        except Exception:  # one alarm's event must not stop the others'
                            log.exception("OPC UA alarm event not sent alarm=%s", record["id"])
        finally:
            feed.close()

    async def emit(self, record: dict[str, Any]) -> None:
        node = await self._node(record["id"])
        charger = record["point"].split("/")[1] if record["point"].startswith("chargers/") else None
        source = self.space.objects.get(f"{ROOT}.Chargers.{charger}") if charger else None
        variable = self.space.variables.get(record["point"])
        state = record["state"]
        active, acked = record["active"], record["acknowledged"]
        fields = {
            "NodeId": node, "ConditionName": record["id"], "BranchId": ua.NodeId(),
            "SourceNode": source or self.space.objects[ROOT], "SourceName": charger or ROOT,
            "InputNode": variable[0] if variable else ua.NodeId(), "Retain": state != "normal",
            "Severity": record["severity"], "LastSeverity": record["severity"], "Quality": ua.StatusCode(),
            "EnabledState": ua.LocalizedText("Enabled"), "EnabledState/Id": True,
            "ActiveState": _two_state("Active", "Inactive", active), "ActiveState/Id": active,
            "AckedState": _two_state("Acknowledged", "Unacknowledged", acked), "AckedState/Id": acked,
            "ConfirmedState": ua.LocalizedText("Confirmed"), "ConfirmedState/Id": True,
            "SuppressedState": _two_state("Suppressed", "Unsuppressed", state == "suppressed"),
            "SuppressedState/Id": state == "suppressed",
            "OutOfServiceState": _two_state("Out of Service", "In Service", state == "out_of_service"),
            "OutOfServiceState/Id": state == "out_of_service",
            "SuppressedOrShelved": state in ("suppressed", "shelved"),
            "Comment": ua.LocalizedText(record["comment"] or ""), "ClientUserId": record["by"] or "",
        }  # fmt: skip
        since = record["since"] or record["raised_at"]
        ids = set()
        for generator, template in self._generators:
            event = copy.copy(template)  # asyncua keeps the event object of a retained condition: one each time
            for name, value in fields.items():
                setattr(event, name, value)
            generator.event = event
            await generator.trigger(time_attr=parse_iso(since) if since else None, message=record["message"])
            ids.add(event.EventId.Value)
        self.last_event[record["id"]] = ids
        self.events += 1

    async def _node(self, alarm_id: str) -> ua.NodeId:
        found = self.nodes.get(alarm_id)
        if found is None:
            node = await self._folder.add_object(ua.NodeId(f"{FOLDER}.{alarm_id}", self.idx),
                                                 ua.QualifiedName(alarm_id, self.idx))  # fmt: skip
            found = self.nodes[alarm_id] = node.nodeid
            self.by_node[found] = alarm_id
        return found

    async def _acknowledge(self, parent: ua.NodeId, *args: ua.Variant) -> Any:
        alarm_id = self.by_node.get(parent)
        if alarm_id is None:
            return ua.StatusCode(_S.BadConditionIdInvalid if parent else _S.BadNodeIdInvalid)
        if len(args) != 2:
            return ua.StatusCode(_S.BadArgumentsMissing if len(args) < 2 else _S.BadTooManyArguments)
        event_id, comment = args[0].Value, args[1].Value
        if not isinstance(event_id, bytes) or event_id not in self.last_event.get(alarm_id, ()):
            return ua.StatusCode(_S.BadEventIdUnknown)
        text = comment.Text if isinstance(comment, ua.LocalizedText) else None
        try:
            command = AcknowledgeAlarm(alarm_id, text or None)
        except CommandError:
            return ua.StatusCode(_S.BadInvalidArgument)
        status, _ = await self.door._execute(command, caller.get())
        if status.value == _S.BadRequestNotAllowed:  # the door's "rejected": nothing to acknowledge
            return ua.StatusCode(_S.BadConditionBranchAlreadyAcked)
        return [] if status.is_good() else ua.CallMethodResult(StatusCode=status)

