"""Notification routes: by level, point pattern, on-call hours (site time), and return to normal on request."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from gateway.settings import NotifySettings
from rules.annunciator import Route
from rules.schedules import parse_window

PARIS = ZoneInfo("Europe/Paris")
MONDAY_NOON_PARIS = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)  # 12:00 in Paris
SUNDAY_NIGHT = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def route(**keys: object) -> Route:
    settings = NotifySettings.model_validate({"email": ["a@b.c"], **keys})
    return Route("notify[0]", settings, tuple(parse_window(w) for w in settings.hours))


def record(level: int = 15, point: str = "chargers/CP01/evse/1/status") -> dict[str, object]:
    return {"level": level, "point": point}


def test_level_and_sources_select_the_alarms():
    r = route(min_level=10, sources=["chargers/*", "meters/grid/*"])
    assert r.takes(record(), "raised", MONDAY_NOON_PARIS, PARIS)
    assert not r.takes(record(level=9), "raised", MONDAY_NOON_PARIS, PARIS)
    assert r.takes(record(point="meters/grid/online"), "raised", MONDAY_NOON_PARIS, PARIS)
    assert not r.takes(record(point="meters/building/online"), "raised", MONDAY_NOON_PARIS, PARIS)


def test_on_call_hours_are_in_the_site_time_zone():
    r = route(hours=["mon-fri 12:00-13:00"])
    assert r.takes(record(), "raised", MONDAY_NOON_PARIS, PARIS)
    assert not r.takes(record(), "raised", MONDAY_NOON_PARIS, ZoneInfo("UTC"))  # 11:00 there
    assert not r.takes(record(), "raised", SUNDAY_NIGHT, PARIS)


def test_a_return_to_normal_is_told_only_to_routes_that_ask():
    assert not route().takes(record(), "returned", MONDAY_NOON_PARIS, PARIS)
    assert route(return_to_normal=True).takes(record(), "returned", MONDAY_NOON_PARIS, PARIS)
