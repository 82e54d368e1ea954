"""Broken alarm config is refused with the key that is wrong; built-ins are adjusted key by key."""

from __future__ import annotations

import pytest

from gateway.app import config_problems
from gateway.settings import ConfigError, load_settings
from rules.alarm_definitions import definitions


def load(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_settings(path, {})


def test_what_is_wrong_is_named_by_its_key(tmp_path):
    settings = load(tmp_path, """
[smtp]
host = "mail"
from = "a@b.c"
[[notify]]
email = ["a@b.c"]
subject = "{{ alarm.message"
hours = ["someday 25:00-26:00"]
[[alarms]]
id = "lonely"
[[alarms]]
id = "no-condition"
point = "x/y"
[[alarms]]
id = "masked"
point = "x/z"
equals = [true]
masked_by = ["nobody:{1}"]
""")
    problems = config_problems(settings)
    assert any(p.startswith("notify[0].subject: not a valid template") for p in problems)
    assert any(p.startswith("notify[0].hours:") for p in problems)
    assert any(p.startswith("alarms.lonely.point: required") for p in problems)
    assert any(p.startswith("alarms.no-condition: give a limit") for p in problems)
    assert "alarms.masked.masked_by: no alarm 'nobody'" in problems


def test_types_and_references_are_checked_at_load(tmp_path):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, '[[notify]]\nemail = ["a@b.c"]\n[[alarms]]\nid = "a"\npoint = "p/q"\n'
                       'high = { limit = 1 }\nhigh_high = { limit = 0 }\n')  # fmt: skip
    assert "notify[0].email: e-mail needs an [smtp] section" in error.value.problems
    assert any("high_high.limit must be above high.limit" in p for p in error.value.problems)


def test_a_built_in_is_adjusted_only_where_the_config_says(tmp_path):
    found = {d.id: d for d in definitions(load(tmp_path, """
[[alarms]]
id = "charger-offline"
delay_s = 120
[[alarms]]
id = "meter-stale"
enabled = false
"""))}
    offline = found["charger-offline"]
    assert offline.conditions[0].on_delay_s == 120 and offline.conditions[0].level == 10
    assert offline.source == "builtin" and offline.message == "Charger {1} is offline"
    assert "meter-stale" not in found
