"""The address space of one running server: nodes made from the points as they appear, their values written."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua

from bridges.opcua_server.names import KNOWN_RANGES, ROOT, camel, eu_information, object_names, point_body, variant_type
from bridges.opcua_server.values import WAITING, data_value, type_mismatch
from gateway.model import Site
from gateway.points import Point, ProcessImage, evse_point, kind_of

log = logging.getLogger(__name__)

LIMIT_POINT = "site/limit_w"
WRITABLE = frozenset({LIMIT_POINT})

# Made ahead of their first value (PRODUCT.md §9): the site's, every charger's (by collection path), every EVSE's.
SITE_POINTS = ("limit_w", "grid_power_w")
TEMPLATES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("chargers",): ("online",),
    ("chargers", "evse"): ("status", "power_w", "current_a", "energy_wh", "soc", "limit_w", "transaction_id"),
    ("meters",): ("online", "power_w"),
}

# Nodes are made in batches between which the loop runs.
ADD_NODES_BATCH = 200

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

    async def prepare(self, site: Site) -> None:
        """The configured site, chargers, EVSEs and meters, ahead of their values (with their usual points)."""
        names = [f"site/{leaf}" for leaf in SITE_POINTS]
        for charger in list(site.chargers.values()):
            names.append(f"chargers/{charger.id}/online")
            names += [evse_point(charger.id, n, "status") for n in sorted(charger.evses)]
        names += [f"meters/{meter}/power_w" for meter in site.meters]
        for name in names:
            self.ensure(name)
            await self.flush_when_full()
        await self.flush()

    def ensure(self, name: str, value: Any = None) -> tuple[ua.NodeId, ua.VariantType]:
        """The node of a point, queued for making (with the objects on its way) when it is new."""
        known = self.variables.get(name)
        if known is not None:
            return known
        segments = name.split("/")
        body = point_body(name)
        parent = ROOT
        for i, browse in enumerate(object_names(body)):
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
            value = type_mismatch(point, now)
            problem = f"{type(e).__name__}: {e}"
        try:
            status = await self.aspace.write_attribute_value(node, ua.AttributeIds.Value, value)
        except Exception as e:  # noqa: BLE001 -- one node's trouble must not keep the others from their values
            status, problem = ua.StatusCode(ua.StatusCodes.BadInternalError), f"{type(e).__name__}: {e}"
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
