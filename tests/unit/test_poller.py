"""The poller's timing rules, on a hand-driven clock: backoff of a silent meter, when values go stale."""

from __future__ import annotations

from datetime import UTC, datetime

from drivers.modbus.bus import BusError
from drivers.modbus.poller import BusPoller, PolledMeter
from drivers.modbus.registers import Register, plan
from gateway.points import ProcessImage, Quality


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class ScriptedBus:
    """Answers with zeros, or fails, as the test says."""

    name = "scripted"

    def __init__(self) -> None:
        self.answering = True

    async def read(self, unit: int, kind: str, address: int, count: int) -> list[int]:
        if not self.answering:
            raise BusError("no answer")
        return [0] * count

    def close(self) -> None:
        pass


def setup(poll_s=1.0, stale_after_s=5.0, max_backoff_s=10.0):
    clock, bus, image = Clock(), ScriptedBus(), ProcessImage()
    blocks = tuple(plan([Register("power_w", 0, "input", "f32")]))
    meter = PolledMeter("m", 1, blocks, poll_s, stale_after_s, max_backoff_s)
    meter.since = meter.next_poll = clock.now
    poller = BusPoller(bus, [meter], image, clock=clock, wallclock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    return clock, bus, image, meter, poller


async def test_a_silent_meter_is_retried_ever_later_up_to_its_cap():
    clock, bus, _, meter, poller = setup(poll_s=1.0, max_backoff_s=10.0)
    bus.answering = False
    waits = []
    for _ in range(7):
        await poller.poll(meter)
        waits.append(meter.next_poll - clock.now)
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    bus.answering = True
    await poller.poll(meter)
    assert meter.failures == 0 and meter.next_poll == clock.now + 1.0  # back to its cadence, from now


async def test_values_go_bad_exactly_when_the_meter_has_been_silent_too_long():
    clock, bus, image, meter, poller = setup(stale_after_s=5.0)
    await poller.poll(meter)
    assert image.get("meters/m/power_w").quality == Quality.good
    assert meter.stale_at() == clock.now + 5.0
    bus.answering = False
    clock.now += 4.999
    await poller.poll(meter)
    poller._mark_stale(clock.now)
    assert image.get("meters/m/power_w").quality == Quality.good
    clock.now += 0.001
    poller._mark_stale(clock.now)
    assert image.get("meters/m/power_w").quality == Quality.bad and meter.stale
    bus.answering = True
    await poller.poll(meter)
    assert image.get("meters/m/power_w").quality == Quality.good and not meter.stale


async def test_a_meter_that_never_answered_is_stale_from_the_start_of_polling():
    clock, bus, _, meter, poller = setup(stale_after_s=5.0)
    assert meter.stale_at() == clock.now + 5.0
