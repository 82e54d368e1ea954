"""The last hour of the site's and the meters' numbers, for the console's curves.

The process image keeps only the latest value of a point; the curves of the load-cap and meter pages need the
hour before the page was opened. Every ``every_s`` the numeric points under ``prefixes`` are sampled into rings
of fixed length (NaN where a point had no good value), so the memory is bounded by the number of points, and
the pages' live streams send each new sample as it is taken.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Iterable

from gateway.points import ProcessImage, Quality

EVERY_S = 5.0
KEEP = 720  # an hour of samples


class Recent:
    def __init__(self, image: ProcessImage, prefixes: tuple[str, ...] = ("site/", "meters/"), every_s: float = EVERY_S,
                 keep: int = KEEP) -> None:  # fmt: skip
        self.image = image
        self.prefixes = prefixes
        self.every_s = every_s
        self.times: deque[float] = deque(maxlen=keep)  # unix seconds, as uPlot reads them
        self.series: dict[str, deque[float]] = {}
        self.taken = 0  # samples taken so far: a stream sends the ones it has not seen

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.every_s)

    def sample(self, now: float | None = None) -> None:
        self.times.append(time.time() if now is None else now)
        seen = set()
        for prefix in self.prefixes:
            for name, point in self.image.items(prefix):
                value = point.value
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                ring = self.series.get(name)
                if ring is None:  # a point that appears: nothing known before
                    ring = self.series[name] = deque([math.nan] * (len(self.times) - 1), maxlen=self.times.maxlen)
                ring.append(float(value) if point.quality != Quality.bad else math.nan)
                seen.add(name)
        for name, ring in self.series.items():
            if name not in seen:
                ring.append(math.nan)
        self.taken += 1

    def curve(self, names: Iterable[str]) -> list[list[float | None]]:
        """[times, series...] as uPlot takes them (None where nothing is known)."""
        names = list(names)
        empty = [math.nan] * len(self.times)
        columns = [list(self.times)] + [list(self.series.get(n, empty)) for n in names]
        return [[None if math.isnan(v) else v for v in column] for column in columns]

    def last(self, names: Iterable[str]) -> list[float | None]:
        """The latest sample: [time, value per name]."""
        if not self.times:
            return []
        values = [self.series[n][-1] if n in self.series else math.nan for n in names]
        return [self.times[-1]] + [None if math.isnan(v) else v for v in values]
