"""Alarm definitions: the built-in ones, adjusted and completed by the config's ``[[alarms]]``.

Built-in (on by default; an ``[[alarms]]`` entry with a built-in's id changes only the keys it gives, ``enabled =
false`` turns it off):

=========================  ==================================  ===============================================
id                         point                               raised when
=========================  ==================================  ===============================================
charger-offline            chargers/*/online                   false for 60 s
charger-faulted            chargers/*/status                   Faulted (the charger as a whole)
connector-faulted          chargers/*/evse/*/status            Faulted, shown with the charger's error code, info
                                                               and vendor error
charger-uncontrollable     chargers/*/controllable             false: the load cap cannot steer it
upstream-unreachable       chargers/*/upstream_online          false for 60 s (the OCPP relay's link)
meter-stale                meters/*/online                     false for 10 s
grid-meter-stale           meters/{grid meter}/online          the same, for the grid meter (silent in fail-safe)
site-failsafe              site/failsafe                       true: the EVs are held to the fallback limit
grid-over-limit            site/excess_w                       the import over the site limit for 10 s
outbox-near-budget         outbox/queued_bytes                 above 80 % of outbox.max_mb
disk-low                   gateway/disk_free_mb                under twice outbox.min_free_mb (and under it)
certificate-expiring       gateway/certificates/*/days_left    30 days left (and 7)
config-invalid             gateway/config_valid                false: the file on disk would not load
=========================  ==================================  ===============================================

Masks keep cascades quiet: a charger offline silences its connectors' (and its refusals', its upstream link's)
alarms; the site's fail-safe silences the grid meter's staleness that caused it.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.settings import AlarmSettings, LimitSettings, Settings
from rules.alarms import LIMITS, STATE, Condition, Definition
from rules.schedules import parse_window

MB = 1_000_000
FAULT_CONTEXT = ("error_code", "error_info", "vendor_error_code")


def _state(level: int, *values: object, delay_s: float = 0.0) -> tuple[Condition, ...]:
    return (Condition(STATE, level, values=values, on_delay_s=delay_s),)


def builtins(settings: Settings) -> list[Definition]:
    offline = ("charger-offline:{1}",)
    budget = settings.outbox.max_mb * MB
    floor = settings.outbox.min_free_mb
    grid = settings.site.grid_meter
    found = [
        Definition("charger-offline", "chargers/*/online", _state(10, False, delay_s=60),
                   "Charger {1} is offline", description="A charger lost its connection to the gateway"),
        Definition("charger-faulted", "chargers/*/status", _state(15, "Faulted"),
                   "Charger {1} is faulted: {error_code} {error_info} {vendor_error_code}", masked_by=offline,
                   context=FAULT_CONTEXT, description="The charger as a whole reports Faulted"),
        Definition("connector-faulted", "chargers/*/evse/*/status", _state(15, "Faulted"),
                   "Charger {1} EVSE {2} is faulted: {error_code} {error_info} {vendor_error_code}",
                   masked_by=offline, context=FAULT_CONTEXT, description="A connector reports Faulted"),
        Definition("charger-uncontrollable", "chargers/*/controllable", _state(12, False),
                   "Charger {1} refuses the load cap's charging profiles", masked_by=offline,
                   description="The load cap cannot steer the charger"),
        Definition("upstream-unreachable", "chargers/*/upstream_online", _state(12, False, delay_s=60),
                   "The upstream CSMS is unreachable for charger {1}", masked_by=offline,
                   description="The OCPP relay's link to the upstream CSMS is down"),
        Definition("meter-stale", "meters/*/online", _state(12, False, delay_s=10), "Meter {1} does not answer",
                   exclude=(f"meters/{grid}/online",) if grid else (), description="A meter's values are stale"),
        Definition("site-failsafe", "site/failsafe", _state(20, True),
                   "The site is in fail-safe: the grid meter is silent, the EVs are held to the fallback limit",
                   description="The load cap holds the EVs to site.fallback_limit_w"),
        Definition("grid-over-limit", "site/excess_w", (Condition("high", 20, 1.0, on_delay_s=10),),
                   "The grid import is {value} W over the site limit", description="Import over the site limit"),
        Definition("outbox-near-budget", "outbox/queued_bytes",
                   (Condition("high", 12, 0.8 * budget, 0.1 * budget),),
                   "The outbox holds {value} bytes, near its budget",
                   description="Messages pile up for a receiver that does not take them"),
        Definition("disk-low", "gateway/disk_free_mb",
                   (Condition("low", 15, 2 * floor, 0.25 * floor), Condition("low_low", 20, floor, 0.25 * floor)),
                   "Only {value} MB free on the state directory's disk", description="Little disk space left"),
        Definition("certificate-expiring", "gateway/certificates/*/days_left",
                   (Condition("low", 12, 30, 1), Condition("low_low", 18, 7, 1)),
                   "The {1} certificate expires in {value} days", description="A certificate expires soon"),
        Definition("config-invalid", "gateway/config_valid", _state(15, False),
                   "The configuration file on disk is invalid", description="The next start would fail"),
    ]  # fmt: skip
    if grid:
        found.insert(6, Definition("grid-meter-stale", f"meters/{grid}/online", _state(15, False, delay_s=10),
                                   f"The grid meter {grid} does not answer", masked_by=("site-failsafe",),
                                   description="The grid meter's values are stale"))  # fmt: skip
    return [replace(d, source="builtin") for d in found]


def definitions(settings: Settings) -> list[Definition]:
    """The built-in definitions with the config's adjustments, then the config's own; disabled ones left out."""
    found = {d.id: d for d in builtins(settings)}
    for entry in settings.alarms:
        base = found.get(entry.id)
        if base is None and entry.point is None:
            continue  # check() says so
        found[entry.id] = adjust(base, entry)
    return [d for d in found.values() if d.conditions and (d.id not in _disabled(settings))]


def _disabled(settings: Settings) -> set[str]:
    return {entry.id for entry in settings.alarms if not entry.enabled}


def adjust(base: Definition | None, entry: AlarmSettings) -> Definition:
    given = entry.model_fields_set
    d = base or Definition(entry.id, entry.point or "", ())
    if "point" in given and entry.point:
        d = replace(d, point=entry.point)
    limits = [_limit(kind, getattr(entry, kind)) for kind in LIMITS if getattr(entry, kind) is not None]
    if limits:
        d = replace(d, conditions=tuple(limits))
    elif entry.equals is not None or entry.bad_quality:
        d = replace(d, conditions=(Condition(STATE, entry.level or 10, values=tuple(entry.equals or ()),
                                             bad_quality=bool(entry.bad_quality)),))  # fmt: skip
    if any(k in given for k in ("level", "delay_s", "off_delay_s")):
        d = replace(d, conditions=tuple(replace(
            c, level=entry.level if entry.level is not None and c.kind == STATE else c.level,
            on_delay_s=entry.delay_s if entry.delay_s is not None and c.kind == STATE else c.on_delay_s,
            off_delay_s=entry.off_delay_s if entry.off_delay_s is not None and c.kind == STATE else c.off_delay_s,
        ) for c in d.conditions))  # fmt: skip
    for key in ("message", "masked_by", "exclude"):
        if key in given and getattr(entry, key) is not None:
            value = getattr(entry, key)
            d = replace(d, **{key: tuple(value) if isinstance(value, list) else value})
    return replace(d, source=d.source if base is not None else "config")


def _limit(kind: str, s: LimitSettings) -> Condition:
    return Condition(kind, s.level, s.limit, s.deadband, on_delay_s=s.delay_s, off_delay_s=s.off_delay_s)


def check(settings: Settings) -> list[str]:
    """What the settings' types cannot say: a new alarm without a point or a condition, masks naming no alarm."""
    known = {d.id for d in builtins(settings)}
    problems = []
    for entry in settings.alarms:
        where = f"alarms.{entry.id}"
        if entry.id not in known:
            if entry.point is None:
                problems.append(f"{where}.point: required (not a built-in alarm: {', '.join(sorted(known))})")
            elif not any(getattr(entry, k) is not None for k in LIMITS) and entry.equals is None \
                    and not entry.bad_quality:  # fmt: skip
                problems.append(f"{where}: give a limit (high_high, high, low, low_low) or a state (equals, "
                                "bad_quality)")  # fmt: skip
        if entry.point is not None and any(not part for part in entry.point.split("/")):
            problems.append(f"{where}.point: {entry.point!r} is not a point name (segments joined by /)")
    for n, route in enumerate(settings.notify):
        for window in route.hours:
            try:
                parse_window(window)
            except ValueError as e:
                problems.append(f"notify[{n}].hours: {e}")
    ids = known | {e.id for e in settings.alarms}
    for entry in settings.alarms:
        for masker in entry.masked_by or ():
            if masker.split(":", 1)[0] not in ids:
                problems.append(f"alarms.{entry.id}.masked_by: no alarm {masker.split(':', 1)[0]!r}")
    return problems
