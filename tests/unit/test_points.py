"""The process image and its coalescing feeds."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.points import ProcessImage, Quality, kind_of


def test_set_tells_feeds_only_about_changes():
    image = ProcessImage()
    feed = image.feed("chargers/CP01/")
    assert image.set("chargers/CP01/online", True) is True
    assert image.set("chargers/CP01/online", True) is False
    image.set("chargers/CP02/online", True)
    changes = feed.get_nowait()
    assert list(changes) == ["chargers/CP01/online"] and changes["chargers/CP01/online"].value is True
    assert feed.get_nowait() == {}


async def test_a_slow_consumer_gets_the_latest_value_and_the_count_of_what_it_missed():
    image = ProcessImage()
    feed = image.feed()
    for watts in range(1000):
        image.set("chargers/CP01/evse/1/power_w", float(watts))
    changes = await feed.get()
    assert len(changes) == 1 and changes["chargers/CP01/evse/1/power_w"].value == 999.0
    assert feed.coalesced == 999
    feed.close()
    image.set("chargers/CP01/evse/1/power_w", 1.0)
    assert feed.get_nowait() == {}


def test_mark_changes_quality_and_keeps_values():
    image = ProcessImage()
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    image.set("chargers/CP01/evse/1/power_w", 7400.0, ts)
    image.set("chargers/CP01/evse/2/power_w", 0.0, ts)
    image.set("chargers/CP02/evse/1/power_w", 11000.0, ts)
    feed = image.feed()
    image.mark("chargers/CP01/", Quality.bad)
    assert image.get("chargers/CP01/evse/1/power_w").quality == Quality.bad
    assert image.get("chargers/CP01/evse/1/power_w").value == 7400.0
    assert image.get("chargers/CP01/evse/1/power_w").ts == ts
    assert image.get("chargers/CP02/evse/1/power_w").quality == Quality.good
    assert set(feed.get_nowait()) == {"chargers/CP01/evse/1/power_w", "chargers/CP01/evse/2/power_w"}


def test_the_schema_names_units_by_the_last_segment():
    assert kind_of("chargers/CP01/evse/1/power_w").unit == "W"
    assert kind_of("chargers/CP01/evse/1/current_a_l2").unit == "A"
    assert kind_of("chargers/CP01/evse/1/energy_wh").unit == "Wh"
    assert kind_of("chargers/CP01/evse/1/whatever") is None
