"""Schedules: time-of-use site limits and activation-group windows, in the site's time zone."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.settings import ConfigError, LimitScheduleSettings, Settings, load_settings
from rules.schedules import Window, check, parse_days, parse_window, scheduled_limit

BERLIN = ZoneInfo("Europe/Berlin")
# 2026-05-04 is a Monday; in Berlin summer time ends on 2026-10-25 (03:00 CEST -> 02:00 CET) and starts on
# 2026-03-29 (02:00 CET -> 03:00 CEST).


def berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def utc_in_berlin(text: str) -> datetime:
    """A UTC moment as the schedules see it: on the site's clock."""
    return datetime.fromisoformat(text + "+00:00").astimezone(BERLIN)


def entries(*lines: tuple[str, float]) -> list[LimitScheduleSettings]:
    return [LimitScheduleSettings(cron=cron, limit_w=limit_w) for cron, limit_w in lines]


def settings(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "c.toml"
    path.write_text('[ocpp]\nsecurity_profile = 0\n[[chargers]]\nid = "CP01"\nevses = 2\n' + text)
    return load_settings(path, {})


# -- days and windows ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "days"), [
    ("mon-fri", {0, 1, 2, 3, 4}), ("sat,sun", {5, 6}), ("mon-wed,fri", {0, 1, 2, 4}), ("SUN", {6}),
    ("*", set(range(7))), ("daily", set(range(7))),
    ("fri-mon", {4, 5, 6, 0}),  # a range may run over the weekend
])  # fmt: skip
def test_days(text, days):
    assert parse_days(text) == days


@pytest.mark.parametrize("text", ["", "monday", "1-5", "mon-funday", "mon,,tue", "mon;tue"])
def test_days_not_named_as_three_letters_are_refused(text):
    with pytest.raises(ValueError, match="days are mon tue wed thu fri sat sun"):
        parse_days(text)


def test_a_window_is_days_and_minutes_after_midnight():
    assert parse_window("mon-fri 07:00-19:00") == Window(frozenset(range(5)), 7 * 60, 19 * 60, "mon-fri")
    assert parse_window(" sat  8:00 - 12:30 ") == Window(frozenset({5}), 8 * 60, 12 * 60 + 30, "sat")
    assert parse_window("daily 00:00-24:00") == Window(frozenset(range(7)), 0, 24 * 60, "*")


@pytest.mark.parametrize("text", [
    "mon-fri 7-19", "mon-fri 07:00", "mon-fri07:00-19:00", "funday 07:00-19:00",
    "mon 25:00-26:00", "mon 07:60-08:00", "mon 24:30-01:00",
])  # fmt: skip
def test_a_window_that_does_not_parse_is_refused(text):
    with pytest.raises(ValueError):
        parse_window(text)


@pytest.mark.parametrize(("window", "at", "open_"), [
    ("mon-fri 07:00-19:00", "2026-05-04 06:59", False),
    ("mon-fri 07:00-19:00", "2026-05-04 07:00", True),  # from the start ...
    ("mon-fri 07:00-19:00", "2026-05-08 18:59", True),
    ("mon-fri 07:00-19:00", "2026-05-08 19:00", False),  # ... to the end, not including it
    ("mon-fri 07:00-19:00", "2026-05-09 12:00", False),  # Saturday
    ("sun 22:00-06:00", "2026-05-10 21:59", False),
    ("sun 22:00-06:00", "2026-05-10 22:00", True),
    ("sun 22:00-06:00", "2026-05-11 05:59", True),  # runs into Monday ...
    ("sun 22:00-06:00", "2026-05-11 06:00", False),
    ("sun 22:00-06:00", "2026-05-10 03:00", False),  # ... and Sunday's early hours belong to Saturday's night
    ("sun 22:00-06:00", "2026-05-09 23:00", False),
    ("fri-sun 22:00-06:00", "2026-05-04 03:00", True),  # Sunday's night, on Monday
    ("fri-sun 22:00-06:00", "2026-05-08 03:00", False),  # Thursday's night, on Friday
    ("mon 07:00-07:00", "2026-05-05 06:59", True),  # an end at the start: a whole day from the start
    ("mon 07:00-07:00", "2026-05-05 07:00", False),
    ("daily 00:00-24:00", "2026-05-06 23:59", True),
])  # fmt: skip
def test_whether_a_window_is_open_at_a_moment(window, at, open_):
    assert parse_window(window).open_at(berlin(at)) is open_


# -- scheduled_limit -------------------------------------------------------------------------------------------

PEAK = entries(("0 17 * * mon-fri", 150_000), ("0 21 * * *", 250_000))


@pytest.mark.parametrize(("at", "limit_w"), [
    ("2026-05-04 16:59:59", 250_000),  # Monday before the peak: Sunday 21:00's entry
    ("2026-05-04 17:00:00", 150_000),  # from the entry's moment on
    ("2026-05-04 20:59:59", 150_000),
    ("2026-05-04 21:00:00", 250_000),  # until the next entry's
    ("2026-05-09 18:00:00", 250_000),  # no peak on Saturday
])  # fmt: skip
def test_the_entry_in_force_is_the_one_whose_moment_came_last(at, limit_w):
    assert scheduled_limit(PEAK, berlin(at), BERLIN) == limit_w


def test_the_moments_are_on_the_sites_clock():
    assert scheduled_limit(PEAK, utc_in_berlin("2026-05-04T15:00"), BERLIN) == 150_000  # 17:00 in Berlin
    assert scheduled_limit(PEAK, utc_in_berlin("2026-05-04T15:00"), ZoneInfo("UTC")) == 250_000


def test_seasons_hold_for_months():
    seasons = entries(("0 0 1 6 *", 100_000), ("0 0 1 10 *", 200_000))
    assert scheduled_limit(seasons, berlin("2026-08-20 12:00"), BERLIN) == 100_000
    assert scheduled_limit(seasons, berlin("2026-01-15 12:00"), BERLIN) == 200_000  # since last October


def test_no_limit_without_an_entry_that_ever_came():
    assert scheduled_limit([], berlin("2026-05-04 12:00"), BERLIN) is None
    assert scheduled_limit(entries(("0 0 30 2 *", 1000)), berlin("2026-05-04 12:00"), BERLIN) is None  # no Feb 30


@pytest.mark.parametrize(("utc", "limit_w"), [
    ("2026-10-25T00:10", 2),  # 02:10 summer time
    ("2026-10-25T00:40", 1),  # 02:40 summer time
    ("2026-10-25T01:10", 2),  # 02:10 again, winter time: the 02:00 entry came last
    ("2026-10-25T01:40", 1),
    ("2026-10-25T02:10", 3),  # 03:10
])  # fmt: skip
def test_the_hour_repeated_when_summer_time_ends_is_taken_in_order(utc, limit_w):
    night = entries(("0 2 * * *", 2), ("30 2 * * *", 1), ("0 3 * * *", 3))
    assert scheduled_limit(night, utc_in_berlin(utc), BERLIN) == limit_w


def test_an_entry_in_the_hour_summer_time_skips_still_comes_that_night():
    night = entries(("30 2 * * *", 1), ("0 21 * * *", 2))
    assert scheduled_limit(night, utc_in_berlin("2026-03-29T00:59"), BERLIN) == 2  # 01:59, winter time
    assert scheduled_limit(night, utc_in_berlin("2026-03-29T02:00"), BERLIN) == 1  # 04:00, summer time


# -- check -----------------------------------------------------------------------------------------------------

GOOD = """
[site]
timezone = "Europe/Berlin"
[[limit_schedule]]
cron = "0 17 * * mon-fri"
limit_w = 150000
[[activation_groups]]
id = "staff"
windows = ["mon-fri 06:00-20:00", "sun 22:00-06:00"]
connectors = ["CP01", "CP01/2"]
"""


def test_a_good_schedule_has_no_problems(tmp_path):
    assert check(settings(tmp_path, GOOD)) == []


def test_a_bad_time_zone_is_the_one_problem_named(tmp_path):
    bad_cron = '[[limit_schedule]]\ncron = "x"\nlimit_w = 1\n'
    bad = settings(tmp_path, GOOD.replace("Europe/Berlin", "Mars/Olympus") + bad_cron)
    assert check(bad) == ["site.timezone: 'Mars/Olympus' is not a time zone (e.g. Europe/Paris)"]


def test_every_schedule_problem_is_named_by_its_key(tmp_path):
    text = GOOD + """
[[limit_schedule]]
cron = "0 25 * * *"
limit_w = 1000
[[limit_schedule]]
cron = "0 17 * *"
limit_w = 1000
[[limit_schedule]]
cron = "0 7 * * 1-5"
limit_w = 1000
[[activation_groups]]
id = "night"
windows = ["mon-fri 7-19"]
connectors = ["CP01/3", "CP01/x", "CP01/0"]
"""
    problems = check(settings(tmp_path, text))
    assert [p.split(": ")[0] for p in problems] == [
        "limit_schedule[1].cron", "limit_schedule[2].cron", "limit_schedule[3].cron",
        "activation_groups.night.windows", *["activation_groups.night.connectors"] * 3,
    ]  # fmt: skip
    assert "'0 17 * *': Wrong number of fields" in problems[1]
    assert "give the weekdays by name (mon-fri)" in problems[2]  # crontab's 1-5 would be Tuesday to Saturday
    assert "'mon-fri 7-19': a window is DAYS HH:MM-HH:MM" in problems[3]
    assert problems[4] == "activation_groups.night.connectors: 'CP01/3': CP01 has EVSEs 1 to 2"


def test_unknown_chargers_and_more_than_ten_groups_are_refused_with_the_settings(tmp_path):
    groups = "".join(f'[[activation_groups]]\nid = "g{n}"\nwindows = ["mon 07:00-19:00"]\nconnectors = ["CP01"]\n'
                     for n in range(10))  # fmt: skip
    with pytest.raises(ConfigError) as error:
        settings(tmp_path, groups + '[[activation_groups]]\nid = "g10"\nwindows = ["mon 07:00-19:00"]\n'
                                    'connectors = ["GHOST/1"]\n')  # fmt: skip
    assert error.value.problems[0].startswith("activation_groups: List should have at most 10 items")
    assert "activation_groups.g10.connectors: no charger has the id 'GHOST'" in error.value.problems
