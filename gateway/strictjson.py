"""JSON as the RFC has it: Python's json module also accepts NaN, Infinity and numbers that overflow a float,
which then break validators, comparisons and every peer we forward them to. Everything read from the network
goes through :func:`loads`."""

from __future__ import annotations

import json
import math
from typing import Any


def loads(text: str | bytes) -> Any:
    """Parse JSON; ValueError for what is not strict JSON."""
    return json.loads(text, parse_constant=_not_json, parse_float=_finite)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} does not fit a number")
    return value
