"""The poller's timing promises, checked exactly on a simulated clock: a silent meter turns bad at its
stale_after_s and not later, even while its bus waits for another silent meter; retries back off up to
their cap; a recovered meter returns to its cadence."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime

import pytest

from drivers.modbus.bus import BusError
from drivers.modbus.poller import BusPoller, PolledMeter
from drivers.modbus.registers import Register, plan
from gateway.points import ProcessImage, Quality


class VirtualTime:
    """Simulated seconds: every task sleeps on this clock, and time jumps to the next wake-up as soon as all of
    them are waiting -- so timing is exact and the test takes no time."""

    def __init__(self) -> None:
        self.now = 0.0
        self._wakeups: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._wakeups, (self.now + max(0.0, seconds), next(self._order), future))
        await future

    async def run(self, horizon: float) -> None:
        while True:
            for _ in range(50):  # let every task that can run, run until it waits again
                await asyncio.sleep(0)
            while self._wakeups and self._wakeups[0][2].cancelled():
                heapq.heappop(self._wakeups)
            if not self._wakeups or self._wakeups[0][0] > horizon:
                self.now = horizon
                return
            self.now, _, future = heapq.heappop(self._wakeups)
            future.set_result(None)


class SimulatedBus:
    """Answers a unit after `latency` simulated seconds, or, for a silent unit, fails after its timeout."""

    name = "simulated"

    def __init__(self, time: VirtualTime, latency: float = 0.01) -> None:
        self.time = time
        self.latency = latency
        self.silent: set[int] = set()
        self.requests: list[tuple[float, int]] = []

    async def read(self, unit: int, kind: str, address: int, count: int, timeout_s: float) -> list[int]:
        self.requests.append((self.time.now, unit))
        if unit in self.silent:
            await self.time.sleep(timeout_s)
            raise BusError("no answer")
        await self.time.sleep(self.latency)
        return [0] * count

    def close(self) -> None:
        pass


class RecordingImage(ProcessImage):
    """Notes the virtual time at which each meter's power first turned bad."""

    def __init__(self, time: VirtualTime) -> None:
        super().__init__()
        self.time = time
        self.went_bad: dict[str, float] = {}

    def _put(self, name: str, point) -> bool:  # every change goes through here, a new value or a new quality
        if point.quality == Quality.bad and name.endswith("/power_w"):
            self.went_bad.setdefault(name.split("/")[1], self.time.now)
        return super()._put(name, point)


class Run:
    """A poller on virtual time."""

    def __init__(self, *meters: dict) -> None:
        self.time = VirtualTime()
        self.bus = SimulatedBus(self.time)
        self.image = RecordingImage(self.time)
        self.went_bad = self.image.went_bad
        blocks = tuple(plan([Register("power_w", 0, "input", "f32")]))
        self.meters = [PolledMeter(m["id"], m["unit"], blocks, m.get("poll_s", 1.0), m.get("stale_after_s", 5.0),
                                   m.get("max_backoff_s", 10.0), m.get("timeout_s", 0.5)) for m in meters]  # fmt: skip
        self.poller = BusPoller(self.bus, self.meters, self.image, clock=lambda: self.time.now,
                                wallclock=lambda: datetime(2026, 1, 1, tzinfo=UTC), sleep=self.time.sleep)  # fmt: skip
        self.task: asyncio.Task | None = None

    async def until(self, horizon: float) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self.poller.run())
        await self.time.run(horizon)

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_a_meter_that_falls_silent_is_bad_at_its_stale_after_s_to_the_millisecond():
    run = Run({"id": "m", "unit": 1, "poll_s": 1.0, "stale_after_s": 5.0, "timeout_s": 0.5})
    await run.until(10.0)
    last_answer = max(t for t, _ in run.bus.requests) + 0.01
    run.bus.silent.add(1)
    await run.until(30.0)
    await run.stop()
    assert run.went_bad["m"] == pytest.approx(last_answer + 5.0, abs=1e-6)  # not a read's timeout later


async def test_a_neighbour_waiting_out_a_silent_meter_stays_good_when_the_config_allows_for_it():
    # stale_after_s 3 s > poll 0.5 s + 0.5 s + 2 s of timeouts on the bus: what check-config asks of it.
    run = Run({"id": "healthy", "unit": 1, "poll_s": 0.5, "stale_after_s": 3.0, "timeout_s": 0.5},
              {"id": "silent", "unit": 2, "poll_s": 0.5, "stale_after_s": 3.0, "timeout_s": 2.0,
               "max_backoff_s": 0.5})  # fmt: skip
    await run.until(5.0)
    last_answer = max(t for t, unit in run.bus.requests if unit == 2) + 0.01
    run.bus.silent.add(2)
    await run.until(120.0)
    await run.stop()
    assert "healthy" not in run.went_bad
    assert run.went_bad["silent"] == pytest.approx(last_answer + 3.0, abs=1e-6)
    answered = [t for t, unit in run.bus.requests if unit == 1]
    assert max(b - a for a, b in zip(answered, answered[1:])) <= 0.5 + 2.0 + 0.01 + 1e-9


async def test_a_silent_meter_is_retried_ever_later_up_to_its_cap_and_then_back_to_its_cadence():
    run = Run({"id": "m", "unit": 1, "poll_s": 1.0, "max_backoff_s": 8.0, "timeout_s": 0.5})
    run.bus.silent.add(1)
    await run.until(60.0)
    starts = [t for t, _ in run.bus.requests]
    gaps = [round(b - a - 0.5, 6) for a, b in zip(starts, starts[1:])]  # each failed try takes its timeout
    assert gaps[:5] == [1.0, 2.0, 4.0, 8.0, 8.0]
    run.bus.silent.clear()
    count = len(run.bus.requests)
    await run.until(70.0)
    await run.stop()
    recovered = [t for t, _ in run.bus.requests[count:]]
    assert [round(b - a, 6) for a, b in zip(recovered[1:], recovered[2:])] == [1.0] * (len(recovered) - 2)
    assert run.image.get("meters/m/power_w").quality == Quality.good
