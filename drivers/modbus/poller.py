"""One task per physical bus: it reads each meter of the bus in turn, block by block, and never two requests
at once (an RS-485 line carries one conversation at a time; a Modbus TCP gateway in front of one is no
different).

A meter that does not answer is retried with a doubling wait, capped at its ``max_backoff_s``, so it costs
the others on the bus one timeout now and then, not one per poll. Its values turn bad once it has not
answered for ``stale_after_s`` (gateway.freshness: on their own timer, even while the bus waits out another
meter's timeout); the first good read makes them good again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from drivers.modbus.bus import BusError, ModbusBus, Refused
from drivers.modbus.registers import Block
from gateway.clock import utcnow
from gateway.freshness import Freshness
from gateway.points import ProcessImage, Quality
from gateway.tasks import raise_if_cancelled

log = logging.getLogger(__name__)


async def read_blocks(bus: ModbusBus, unit: int, blocks: tuple[Block, ...], timeout_s: float,
                      delay_s: float = 0.0) -> tuple[dict[str, float | None], dict[str, str]]:  # fmt: skip
    """Every block of a meter, one request after the other: (values, why each refused point is missing).
    BusError at the first request nobody answers: the meter is silent, the rest would only wait too."""
    values: dict[str, float | None] = {}
    refused: dict[str, str] = {}
    for block in blocks:
        try:
            values.update(block.decode(await bus.read(unit, block.kind, block.start, block.count, timeout_s)))
        except Refused as e:
            refused.update({r.name: str(e) for r in block.registers})
        finally:
            if delay_s:  # the line needs its silence after a failed request as much as after an answer
                await asyncio.sleep(delay_s)
    return values, refused


@dataclass
class PolledMeter:
    id: str
    unit: int
    blocks: tuple[Block, ...]
    poll_s: float
    stale_after_s: float
    max_backoff_s: float
    timeout_s: float = 1.0
    next_poll: float = 0.0
    failures: int = 0
    reads: int = 0  # requests answered, for benchmarks
    points: list[str] = field(default_factory=list)
    freshness: Freshness = field(init=False)  # on its poller's clock, given by the poller

    def __post_init__(self) -> None:
        self.points = [f"meters/{self.id}/{r.name}" for b in self.blocks for r in b.registers]

    @property
    def stale(self) -> bool:
        return self.freshness.stale


class BusPoller:
    def __init__(self, bus: ModbusBus, meters: list[PolledMeter], image: ProcessImage, delay_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, wallclock: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:  # fmt: skip
        self.bus = bus
        self.meters = meters
        self.image = image
        self.delay_s = delay_s  # silence between requests (RS-485 turnaround)
        self._clock = clock
        self._wallclock = wallclock
        self._sleep = sleep
        for meter in meters:
            meter.freshness = Freshness(meter.stale_after_s, clock, sleep)

    async def run(self) -> None:
        now = self._clock()
        for meter in self.meters:
            meter.next_poll = now
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._poll_loop())
                for meter in self.meters:
                    tasks.create_task(meter.freshness.watch(functools.partial(self._went_stale, meter)))
        finally:
            self.bus.close()

    async def _poll_loop(self) -> None:
        while True:
            raise_if_cancelled()
            meter = min(self.meters, key=lambda m: m.next_poll)
            wait = meter.next_poll - self._clock()
            if wait > 0:
                await self._sleep(wait)
                continue
            await self.poll(meter)

    async def poll(self, meter: PolledMeter) -> None:
        try:
            values, refused = await read_blocks(self.bus, meter.unit, meter.blocks, meter.timeout_s, self.delay_s)
        except BusError as error:
            self._failed(meter, str(error))
            return
        if not values:  # it answers, but gives nothing: as good as silent
            self._failed(meter, next(iter(refused.values())))
            return
        meter.reads += len(meter.blocks)
        now, ts = self._clock(), self._wallclock()
        for name, value in values.items():
            point = f"meters/{meter.id}/{name}"
            if value is None:  # the meter says 'not available' (a NaN float): keep the last value, flag it
                previous = self.image.get(point)
                self.image.set(point, previous.value if previous else None, ts, Quality.bad)
            else:
                self.image.set(point, value, ts)
        self.image.mark_points([f"meters/{meter.id}/{name}" for name in refused], Quality.bad)
        if refused:
            self.image.update({f"meters/{meter.id}/last_error": next(iter(refused.values()))}, ts)
        # Keep the cadence (a late poll does not shift the ones after it), except after failures: the backed-off
        # schedule is over, polling starts again from now.
        scheduled = meter.next_poll if not meter.failures else now
        if meter.failures:
            log.info("meter answers again meter=%s bus=%s after %d failures", meter.id, self.bus.name, meter.failures)
        self.image.update({f"meters/{meter.id}/online": True}, ts)
        meter.freshness.alive()
        meter.failures = 0
        meter.next_poll = max(scheduled + meter.poll_s, now)

    def _failed(self, meter: PolledMeter, error: str) -> None:
        meter.failures += 1
        if meter.failures == 1:
            log.warning("meter does not answer meter=%s bus=%s: %s", meter.id, self.bus.name, error)
        ts = self._wallclock()
        self.image.update({f"meters/{meter.id}/online": False, f"meters/{meter.id}/last_error": error}, ts)
        backoff = min(meter.poll_s * 2 ** (meter.failures - 1), max(meter.max_backoff_s, meter.poll_s))
        meter.next_poll = self._clock() + backoff

    def _went_stale(self, meter: PolledMeter) -> None:
        log.warning("meter values stale meter=%s (no answer for %g s)", meter.id, meter.stale_after_s)
        self.image.mark_points(meter.points, Quality.bad)
