"""A point as an OPC UA value: in its node's type, its quality as a status code, the device's time as its source's."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from asyncua import ua

from gateway.points import Point, Quality

_S = ua.StatusCodes
GOOD = ua.StatusCode(_S.Good)
QUALITY_STATUS = {Quality.good: GOOD, Quality.uncertain: ua.StatusCode(_S.UncertainLastUsableValue),
                  Quality.bad: ua.StatusCode(_S.BadNoCommunication)}  # fmt: skip
NO_DATA = ua.StatusCode(_S.BadNoData)
WAITING = ua.StatusCode(_S.BadWaitingForInitialData)


def coerce(value: Any, vtype: ua.VariantType) -> Any:
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
    return FrozenValue(ua.Variant(coerce(point.value, vtype), vtype), StatusCode=QUALITY_STATUS[point.quality],
                       SourceTimestamp=point.ts, ServerTimestamp=now)  # fmt: skip


def type_mismatch(point: Point, now: datetime) -> FrozenValue:
    """What a node shows when the point's value is not one of its type."""
    return FrozenValue(StatusCode=ua.StatusCode(_S.BadTypeMismatch), SourceTimestamp=point.ts, ServerTimestamp=now)
