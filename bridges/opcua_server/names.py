"""Point names in OPC UA terms: the node id rule, engineering units (UNECE codes) and the data type of a node."""

from __future__ import annotations

from typing import Any

from asyncua import ua

from gateway.points import kind_of

ROOT = "Site"
SPECIAL_WORDS = {"soc": "SoC"}

# UNECE Recommendation 20 common codes (OPC UA Part 8, 5.6.4.4): unit -> (code, description).
UNECE_URI = "http://www.opcfoundation.org/UA/units/un/cefact"
# Other units (an inline register's) keep their text, with UnitId -1 ("not available").
UNECE = {"W": ("WTT", "watt"), "Wh": ("WHR", "watt hour"), "kW": ("KWT", "kilowatt"),
         "kWh": ("KWH", "kilowatt hour"), "A": ("AMP", "ampere"), "V": ("VLT", "volt"), "Hz": ("HTZ", "hertz"),
         "%": ("P1", "percent"), "°C": ("CEL", "degree Celsius")}  # fmt: skip
KNOWN_RANGES = {"%": (0.0, 100.0)}


def camel(segment: str) -> str:
    """power_w -> PowerW, current_a_l1 -> CurrentAL1, soc -> SoC, evse -> Evse."""
    return "".join(SPECIAL_WORDS.get(part, part[:1].upper() + part[1:]) for part in segment.split("_") if part)


def point_body(point: str) -> list[str]:
    """The segments of a point's name below the site: site/limit_w -> [limit_w], meters/grid/power_w as they are."""
    segments = point.split("/")
    return segments[1:] if segments[0] == "site" and len(segments) > 1 else segments


def object_names(body: list[str]) -> list[str]:
    """The browse names of the objects on the way to a point: collections CamelCased, ids as they are."""
    return [segment if i % 2 else camel(segment) for i, segment in enumerate(body[:-1])]


def node_path(point: str) -> str:
    """The string node id of a point: chargers/CP01/evse/1/power_w -> Site.Chargers.CP01.Evse.1.PowerW."""
    body = point_body(point)
    return ".".join([ROOT, *object_names(body), camel(body[-1])])


def eu_information(unit: str) -> ua.EUInformation:
    code, description = UNECE.get(unit, (None, unit))
    unit_id = -1
    if code is not None:
        unit_id = 0
        for char in code:
            unit_id = (unit_id << 8) | ord(char)
    return ua.EUInformation(NamespaceUri=UNECE_URI, UnitId=unit_id, DisplayName=ua.LocalizedText(unit),
                            Description=ua.LocalizedText(description))  # fmt: skip


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
