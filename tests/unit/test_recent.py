"""The console's last hour of numbers: fixed-length rings, a gap where a point was unknown or bad."""

from __future__ import annotations

from gateway.points import ProcessImage, Quality
from gateway.web.console.recent import Recent


def test_rings_keep_the_last_samples_with_gaps_where_nothing_good_was_known():
    image = ProcessImage()
    recent = Recent(image, keep=3)
    image.set("site/limit_w", 60000.0)
    image.set("site/mode", "automatic")  # not a number: no curve
    recent.sample(now=1.0)
    image.set("meters/grid/power_w", 1000.0)  # appears at the second sample
    recent.sample(now=2.0)
    image.set("meters/grid/power_w", 1200.0, quality=Quality.bad)
    recent.sample(now=3.0)
    assert recent.curve(["site/limit_w", "meters/grid/power_w"]) == [
        [1.0, 2.0, 3.0], [60000.0, 60000.0, 60000.0], [None, 1000.0, None]]
    recent.sample(now=4.0)
    assert recent.curve(["meters/grid/power_w", "meters/other/power_w"]) == [[2.0, 3.0, 4.0], [1000.0, None, None],
                                                                              [None, None, None]]  # fmt: skip
    assert recent.last(["site/limit_w", "meters/grid/power_w"]) == [4.0, 60000.0, None]
    assert recent.taken == 4 and "site/mode" not in recent.series
