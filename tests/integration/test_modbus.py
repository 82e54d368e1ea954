"""Modbus meters against a real pymodbus server on loopback: every profile, every data type, a meter that
stops answering on a shared bus, a server that goes away and comes back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from drivers.modbus import ModbusDriver
from drivers.modbus.registers import MapError, load_profile, meter_map, profile_names
from gateway.logs import LIBRARY_LEVELS, quiet_libraries
from gateway.points import ProcessImage, Quality
from gateway.settings import ModbusTcpMeter, RegisterSettings
from gateway.sim.meter import SimMeter, SimModbusServer
from tests.conftest import eventually, free_port, in_background

# A site exporting (negative power) with counters well past what 16 bits or a small float hold.
SITE = {
    "power_w": -4321.5, "power_w_l1": -1500.0, "power_w_l2": -1400.25, "power_w_l3": -1421.25,
    "current_a_l1": 6.52, "current_a_l2": 6.09, "current_a_l3": 6.18,
    "voltage_v_l1": 230.1, "voltage_v_l2": 229.8, "voltage_v_l3": 231.4,
    "energy_import_wh": 12_345_678.0, "energy_export_wh": 234_567.0, "frequency_hz": 49.98,
}  # fmt: skip


def sim_meter(unit: int, register_map, values: dict) -> SimMeter:
    return SimMeter(unit, lambda: register_map.words(values), register_map.spans())


@contextlib.asynccontextmanager
async def serving(*meters: SimMeter, port: int | None = None) -> AsyncIterator[int]:
    port = port or free_port()
    started = asyncio.Event()
    async with in_background(SimModbusServer(list(meters)).serve_tcp("127.0.0.1", port, started)):
        await asyncio.wait_for(started.wait(), 10)
        yield port


@contextlib.asynccontextmanager
async def polling(*meters: ModbusTcpMeter) -> AsyncIterator[ProcessImage]:
    image = ProcessImage()
    driver = ModbusDriver(list(meters), image)
    async with in_background(driver.run()):
        yield image


@contextlib.contextmanager
def site_log_levels() -> Iterator[None]:
    """The library log levels of a gateway at INFO (gateway.logs), for the block only."""
    saved = {name: logging.getLogger(name).level for name in LIBRARY_LEVELS}
    quiet_libraries("INFO")
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def meter(meter_id: str, port: int, **settings) -> ModbusTcpMeter:
    defaults = {"poll_s": 0.1, "stale_after_s": 1.0, "timeout_s": 0.3, "max_backoff_s": 0.4}
    return ModbusTcpMeter(id=meter_id, driver="modbus", host="127.0.0.1", port=port, **(defaults | settings))


def tolerance(register) -> float:
    """What a value may lose on the way through the register: half a step of an integer, f32's precision."""
    step = abs(register.scale) / 2 if register.type[0] in "ui" else 0.0
    return step + 1e-6 * max(abs(SITE.get(register.name, 0.0)), 1.0) + 1e-9


@pytest.mark.parametrize("profile", profile_names())
async def test_every_profile_reads_what_the_meter_holds(profile):
    register_map = load_profile(profile)
    async with serving(sim_meter(1, register_map, SITE)) as port, polling(meter("m", port, profile=profile)) as image:
        names = [r.name for r in register_map.registers]
        await eventually(lambda: all(image.get(f"meters/m/{n}") for n in names))
        for r in register_map.registers:
            point = image.get(f"meters/m/{r.name}")
            assert point.quality == Quality.good
            assert point.value == pytest.approx(SITE[r.name], abs=tolerance(r)), r.name
        assert image.value("meters/m/online") is True


async def test_every_data_type_and_order_including_64_bit_counters():
    inline = {
        "energy_import_wh": RegisterSettings(address=0, kind="holding", type="u64"),
        "energy_export_wh": RegisterSettings(address=4, kind="holding", type="u64", word_order="little"),
        "offset_wh": RegisterSettings(address=8, kind="holding", type="i64"),
        "power_w": RegisterSettings(address=12, kind="holding", type="i32", scale=0.1),
        "power_w_l1": RegisterSettings(address=14, kind="holding", type="f64"),
        "current_a_l1": RegisterSettings(address=18, kind="holding", type="u16", scale=0.01),
        "temperature_c": RegisterSettings(address=0, kind="input", type="i16", scale=0.1, offset=-40, unit="°C"),
        "frequency_hz": RegisterSettings(address=1, kind="input", type="f32", byte_order="little"),
        "count": RegisterSettings(address=3, kind="input", type="u32", byte_order="little", word_order="little"),
    }
    values = {"energy_import_wh": 2**40 + 3, "energy_export_wh": 987_654_321_012, "offset_wh": -(2**50) - 1,
              "power_w": -123456.7, "power_w_l1": -1.0 / 3, "current_a_l1": 16.25, "temperature_c": -12.5,
              "frequency_hz": 50.0, "count": 3_000_000_000}  # fmt: skip
    settings = meter("m", 502, registers=inline)
    register_map = meter_map(settings)
    async with serving(sim_meter(1, register_map, values)) as port, polling(meter("m", port, registers=inline)) as image:
        await eventually(lambda: all(image.get(f"meters/m/{n}") for n in values))
        read = {n: image.value(f"meters/m/{n}") for n in values}
        assert image.unit("meters/m/temperature_c") == "°C" and image.unit("meters/m/power_w") == "W"
    assert read["energy_import_wh"] == 2**40 + 3 and isinstance(read["energy_import_wh"], int)
    assert read["offset_wh"] == -(2**50) - 1 and read["energy_export_wh"] == 987_654_321_012
    assert read["power_w"] == pytest.approx(-123456.7) and read["power_w_l1"] == -1.0 / 3
    assert read["current_a_l1"] == pytest.approx(16.25) and read["temperature_c"] == pytest.approx(-12.5)
    assert read["frequency_hz"] == 50.0 and read["count"] == 3_000_000_000
    assert len(register_map.blocks) == 2  # one read per kind: the map is contiguous


async def test_a_silent_meter_goes_bad_without_holding_up_its_neighbour(caplog, capfd):
    caplog.set_level(logging.INFO)
    with site_log_levels():
        await _one_silent_meter()
    # Said once, by us, with the meter's name: not an error and a hex dump from pymodbus at every timeout.
    said = [r.getMessage() for r in caplog.records]
    assert len([m for m in said if m.startswith("meter does not answer meter=b ")]) == 1
    assert len([m for m in said if m.startswith("meter values stale meter=b ")]) == 1
    assert not [r for r in caplog.records if r.name.startswith("pymodbus")]
    assert ">>>>>" not in capfd.readouterr().err


async def _one_silent_meter() -> None:
    sdm = load_profile("eastron-sdm630")
    healthy, silent = sim_meter(1, sdm, SITE), sim_meter(2, sdm, SITE | {"power_w": 999.0})
    async with serving(healthy, silent) as port:
        settings = [meter("a", port, profile="eastron-sdm630", unit=1, stale_after_s=0.8),
                    meter("b", port, profile="eastron-sdm630", unit=2, stale_after_s=0.8)]  # fmt: skip
        async with polling(*settings) as image:
            await eventually(lambda: image.value("meters/b/power_w") == 999.0)
            silent.answering = False
            await eventually(lambda: image.get("meters/b/power_w").quality == Quality.bad)
            assert image.value("meters/b/online") is False and "did not answer" in image.value("meters/b/last_error")
            reads_before = healthy.reads
            await eventually(lambda: healthy.reads >= reads_before + 10)  # the neighbour is still read, often
            assert image.get("meters/a/power_w").quality == Quality.good
            assert image.value("meters/b/power_w") == 999.0  # the last value stays, flagged bad

            silent.answering = True
            await eventually(lambda: image.get("meters/b/power_w").quality == Quality.good)
            assert image.value("meters/b/online") is True


async def test_a_meter_whose_server_goes_away_comes_back_by_itself():
    sdm = load_profile("eastron-sdm630")
    port = free_port()
    values = dict(SITE)
    async with polling(meter("m", port, profile="eastron-sdm630", stale_after_s=0.5)) as image:
        async with serving(sim_meter(1, sdm, values), port=port):
            await eventually(lambda: image.get("meters/m/power_w") is not None)
        await eventually(lambda: image.get("meters/m/power_w").quality == Quality.bad)
        assert "connect" in image.value("meters/m/last_error")
        values["power_w"] = 7777.0
        async with serving(sim_meter(1, sdm, values), port=port):
            await eventually(lambda: image.value("meters/m/power_w") == 7777.0, timeout=15)
            assert image.get("meters/m/power_w").quality == Quality.good


async def test_registers_a_meter_refuses_go_bad_and_the_others_are_kept():
    sdm = load_profile("eastron-sdm630")
    narrow = SimMeter(1, lambda: sdm.words(SITE), {"input": (0, 20)})  # an older firmware: only 0..19
    async with serving(narrow) as port, polling(meter("m", port, profile="eastron-sdm630")) as image:
        await eventually(lambda: image.value("meters/m/last_error"))
        assert "refused input registers 52..53" in image.value("meters/m/last_error")
        assert image.value("meters/m/online") is True
        assert image.get("meters/m/current_a_l1").quality == Quality.good  # in the block it answers
        assert image.get("meters/m/power_w") is None  # refused from the start: never known


def test_a_broken_inline_map_is_refused():
    with pytest.raises(MapError, match="overlaps"):
        meter_map(meter("m", 502, registers={"a": RegisterSettings(address=0, kind="input", type="f32"),
                                             "b": RegisterSettings(address=1, kind="input", type="u16")}))  # fmt: skip


@contextlib.asynccontextmanager
async def serial_line(tmp_path) -> AsyncIterator[tuple[str, str]]:
    """Two ends of a virtual RS-485 line: socat joins two pseudo-terminals."""
    ends = (tmp_path / "meter-side", tmp_path / "gateway-side")
    socat = await asyncio.create_subprocess_exec(
        "socat", *(f"pty,raw,echo=0,link={end}" for end in ends), stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await eventually(lambda: all(end.exists() for end in ends))
        yield str(ends[0]), str(ends[1])
    finally:
        socat.terminate()
        await socat.wait()


async def test_rtu_meters_on_a_serial_line(tmp_path):
    from gateway.settings import ModbusRtuMeter

    em24, sdm = load_profile("carlo-gavazzi-em24"), load_profile("eastron-sdm630")
    first, second = sim_meter(3, em24, SITE), sim_meter(7, sdm, SITE | {"power_w": 1234.5})
    async with serial_line(tmp_path) as (meter_side, gateway_side):
        started = asyncio.Event()
        server = asyncio.create_task(SimModbusServer([first, second]).serve_rtu(meter_side, 19200, started))
        try:
            await asyncio.wait_for(started.wait(), 10)
            common = {"driver": "modbus-rtu", "device": gateway_side, "baudrate": 19200, "poll_s": 0.2,
                      "timeout_s": 0.3, "stale_after_s": 1.5, "max_backoff_s": 0.5}  # fmt: skip
            settings = [ModbusRtuMeter(id="row-a", unit=3, profile="carlo-gavazzi-em24", **common),
                        ModbusRtuMeter(id="row-b", unit=7, profile="eastron-sdm630", **common)]  # fmt: skip
            driver = ModbusDriver(settings, image := ProcessImage())
            assert len(driver.pollers) == 1  # one line, one task
            polling_task = asyncio.create_task(driver.run())
            try:
                await eventually(lambda: image.value("meters/row-b/power_w") == 1234.5)
                assert image.value("meters/row-a/voltage_v_l1") == pytest.approx(230.1, abs=0.05)
                assert image.value("meters/row-a/energy_import_wh") == pytest.approx(12_345_678.0, abs=50)
                second.answering = False
                await eventually(lambda: image.get("meters/row-b/power_w").quality == Quality.bad)
                reads = first.reads
                await eventually(lambda: first.reads >= reads + 5)
                assert image.get("meters/row-a/power_w").quality == Quality.good
            finally:
                polling_task.cancel()
                await asyncio.gather(polling_task, return_exceptions=True)
            # The technician's probe reads the same line once.
            from tests.integration.test_cli import evedge

            code, out, err = await evedge("probe", "modbus", "--rtu", gateway_side, "--baud", "19200", "--unit", "3",
                                          "--profile", "carlo-gavazzi-em24", "--timeout", "0.5")  # fmt: skip
            assert code == 0, err
            assert f"carlo-gavazzi-em24 at {gateway_side} at 19200 baud, unit 3" in out and "230.1" in out
        finally:
            server.cancel()
            await asyncio.gather(server, return_exceptions=True)
