"""Site events as OPC UA events: EvedgeEventType (Kind, Data as JSON), a readable Message and a Severity."""

from __future__ import annotations

import json

from asyncua import Server, ua
from asyncua.server.event_generator import EventGenerator

from bridges.opcua_server.names import ROOT
from bridges.opcua_server.space import Space
from gateway.store.events import Event

SEVERITY_HIGH, SEVERITY_LOW = 700, 100
FAULTLESS = (None, "", "NoError")

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


async def event_generators(server: Server, idx: int, site: ua.NodeId) -> list[EventGenerator]:
    """EvedgeEventType, and its generators on the Site object and on the Server object."""
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


async def emit(generators: list[EventGenerator], space: Space, event: Event) -> None:
    """The event from its charger's object when it has one, else from the Site object."""
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
