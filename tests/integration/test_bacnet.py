"""BACnet/IP devices on loopback: present values read and followed by COV, a silent device, a device that
restarts (and forgets its subscriptions), an object it does not have, units from the objects."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from bacpypes3.basetypes import EngineeringUnits

from drivers.bacnet import BacnetDriver, check, unit_of
from gateway.points import ProcessImage, Quality
from gateway.settings import BacnetMeter, BacnetSettings, Settings
from tests.bacnet_device import BacnetTestPeer, free_udp_port
from tests.conftest import eventually, in_background

POINTS = {"power_w": "analog-input,1", "setpoint_c": "analogValue,2", "heating_on": "binary-input,3"}


@contextlib.asynccontextmanager
async def device(port: int) -> AsyncIterator[BacnetTestPeer]:
    found = await BacnetTestPeer(port).start()
    try:
        yield found
    finally:
        await found.stop()


@contextlib.asynccontextmanager
async def reading(device_port: int, **settings) -> AsyncIterator[tuple[ProcessImage, BacnetDriver]]:
    meter = BacnetMeter(**({"id": "hvac", "driver": "bacnet", "address": f"127.0.0.1:{device_port}",
                            "points": POINTS, "poll_s": 0.2, "stale_after_s": 2.0,
                            "max_backoff_s": 0.5} | settings))  # fmt: skip
    stack = BacnetSettings(address=f"127.0.0.1/24:{free_udp_port()}", apdu_timeout_s=0.3, retries=0)
    image = ProcessImage()
    driver = BacnetDriver(stack, [meter], image)
    async with in_background(driver.run()):
        yield image, driver


async def test_present_values_are_read():
    port = free_udp_port()
    async with device(port) as dev, reading(port, cov=False) as (image, _):
        await eventually(lambda: image.value("meters/hvac/power_w") == 12000.0)
        assert image.value("meters/hvac/setpoint_c") == pytest.approx(21.5)
        assert image.value("meters/hvac/heating_on") is False and image.value("meters/hvac/online") is True
        # A name the schema gives no unit takes its object's (BAC0 makes analog objects in percent); power_w
        # stays in the schema's W.
        assert (image.unit("meters/hvac/setpoint_c"), image.unit("meters/hvac/power_w")) == ("%", "W")
        assert image.unit("meters/hvac/heating_on") is None
        dev.set("binary-input,3", "active")
        dev.set("analog-input,1", 14250.0)
        await eventually(lambda: image.value("meters/hvac/heating_on") is True)
        await eventually(lambda: image.value("meters/hvac/power_w") == 14250.0)


async def test_changes_arrive_by_cov_between_reads():
    port = free_udp_port()
    async with device(port) as dev, reading(port, poll_s=30.0, stale_after_s=60.0) as (image, driver):
        await eventually(lambda: image.value("meters/hvac/power_w") == 12000.0)
        await eventually(lambda: following(driver))
        dev.set("analog-input,1", 15500.0)  # the next read is 30 s away: only COV can bring this
        await eventually(lambda: image.value("meters/hvac/power_w") == 15500.0, timeout=5)


async def test_a_silent_device_goes_bad_and_a_restarted_one_is_followed_again():
    port = free_udp_port()
    async with reading(port, poll_s=0.2, stale_after_s=1.0) as (image, driver):
        async with device(port):
            await eventually(lambda: following(driver))
        await eventually(lambda: image.get("meters/hvac/power_w").quality == Quality.bad)
        assert image.value("meters/hvac/online") is False and "no-response" in image.value("meters/hvac/last_error")
        async with device(port) as dev:  # a restarted device knows no subscription
            await eventually(lambda: image.get("meters/hvac/power_w").quality == Quality.good, timeout=15)
            await eventually(lambda: following(driver), timeout=15)
            dev.set("analog-input,1", 9999.0)
            await eventually(lambda: image.value("meters/hvac/power_w") == 9999.0)


async def test_an_object_the_device_does_not_have_is_reported_and_the_rest_still_read():
    port = free_udp_port()
    points = POINTS | {"missing": "analog-input,99"}
    async with device(port), reading(port, points=points, cov=False) as (image, _):
        await eventually(lambda: image.value("meters/hvac/power_w") == 12000.0)
        await eventually(lambda: image.value("meters/hvac/last_error"))
        assert "missing" in image.value("meters/hvac/last_error")
        assert image.get("meters/hvac/missing").quality == Quality.bad
        assert image.value("meters/hvac/online") is True


def test_config_problems():
    meter = BacnetMeter(id="hvac", driver="bacnet", address="10.0.0.9", points={"x": "analog-inputt,1", "y": "av,2"})
    problems = check(Settings(meters=[meter]))
    assert problems[0] == "bacnet.address: needed for the bacnet meters (hvac)"
    assert problems[1].startswith("meters.hvac.points.x: 'analog-inputt,1' is not an object id")
    assert not check(Settings(meters=[meter.model_copy(update={"points": {"x": "analogInput,1"}})],
                              bacnet=BacnetSettings(address="10.0.0.5/24:47808")))  # fmt: skip


def test_engineering_units_as_a_site_writes_them():
    assert [unit_of(EngineeringUnits(u)) for u in ("kilowatts", "degreesCelsius", "percent", "noUnits")] == \
        ["kW", "°C", "%", None]  # fmt: skip
    assert unit_of(EngineeringUnits("cubicFeetPerMinute")) == "cubic-feet-per-minute"  # no symbol: its BACnet name


def following(driver: BacnetDriver) -> bool:
    """Every point followed by a COV subscription (the driver makes its devices once it runs)."""
    return bool(driver.devices) and driver.devices[0].following == set(POINTS)

