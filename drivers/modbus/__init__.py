"""Modbus TCP and RTU meters: register maps (registers), our layer over pymodbus (bus), one polling task per
physical bus (poller). Values land in the process image as ``meters/{id}/{point}``."""

from __future__ import annotations

import asyncio
from typing import Any

from drivers.modbus.bus import BusError, ModbusBus
from drivers.modbus.poller import BusPoller, PolledMeter, read_blocks
from drivers.modbus.registers import check_meter, meter_map
from gateway.points import ProcessImage
from gateway.settings import ModbusRtuMeter, ModbusTcpMeter, Settings

ModbusMeter = ModbusTcpMeter | ModbusRtuMeter

__all__ = ["ModbusDriver", "check", "probe", "BusError"]


def check(settings: Settings) -> list[str]:
    """Config problems of the Modbus meters: unknown profiles, broken or overlapping register maps, meters on
    one serial line that disagree on how to talk on it."""
    meters = [m for m in settings.meters if isinstance(m, ModbusTcpMeter | ModbusRtuMeter)]
    problems = [p for m in meters for p in check_meter(m)]
    for bus, group in _by_bus(meters).items():
        first = group[0]
        units = [m.unit for m in group]
        for meter in group:
            if units.count(meter.unit) > 1:
                problems.append(f"meters.{meter.id}.unit: {meter.unit} is used twice on {':'.join(map(str, bus))}")
            # Worst case on a shared bus: every other meter waits out its timeout before this one is read.
            worst = meter.poll_s + sum(m.timeout_s for m in group)
            if meter.stale_after_s <= worst:
                problems.append(
                    f"meters.{meter.id}.stale_after_s: {meter.stale_after_s:g} s is not longer than a pass over its "
                    f"bus can take when its meters do not answer ({worst:g} s: poll_s and every timeout_s on "
                    f"{':'.join(map(str, bus))}); its values would turn bad while it waits its turn"
                )
        for other in group[1:]:
            for key in ("baudrate", "parity", "stopbits", "bytesize"):
                if isinstance(other, ModbusRtuMeter) and getattr(other, key) != getattr(first, key):
                    problems.append(f"meters.{other.id}.{key}: {getattr(other, key)} differs from meter "
                                    f"{first.id} on the same line {first.device} ({getattr(first, key)})")  # fmt: skip
    return problems


async def probe(meter: ModbusMeter) -> dict[str, tuple[float | None, str | None]]:
    """Read a meter once, every register of its map: what a technician checks before writing the config.
    By point name: (value, unit), or (None, why) for a point the meter refused."""
    bus, registers = _bus(meter), meter_map(meter)
    try:
        values, refused = await read_blocks(bus, meter.unit, registers.blocks, meter.timeout_s, _delay([meter]))
    finally:
        bus.close()
    if not values:
        raise BusError(next(iter(refused.values())))
    image = ProcessImage()
    units = {r.name: r.unit or image.unit(r.name) for r in registers.registers}
    return {name: (values.get(name), units.get(name) if name in values else refused[name]) for name in units}


class ModbusDriver:
    def __init__(self, meters: list[ModbusMeter], image: ProcessImage) -> None:
        self.pollers = [self._poller(group, image) for group in _by_bus(meters).values()]
        for meter in meters:
            for register in meter_map(meter).registers:
                if register.unit:
                    image.declare_unit(f"meters/{meter.id}/{register.name}", register.unit)

    @staticmethod
    def _poller(meters: list[ModbusMeter], image: ProcessImage) -> BusPoller:
        polled = [PolledMeter(m.id, m.unit, meter_map(m).blocks, m.poll_s, m.stale_after_s, m.max_backoff_s,
                              m.timeout_s) for m in meters]  # fmt: skip
        return BusPoller(_bus(*meters), polled, image, _delay(meters))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for poller in self.pollers:
                tasks.create_task(poller.run(), name=f"modbus-{poller.bus.name}")

    def health(self) -> dict[str, Any]:
        meters = {m.id: {"online": m.failures == 0 and m.freshness.last_alive is not None, "stale": m.stale}
                  for p in self.pollers for m in p.meters}  # fmt: skip
        # A meter that does not answer is the field's problem (its values say so), not the gateway's.
        return {"status": "ok", "meters": meters}


def _bus(*meters: ModbusMeter) -> ModbusBus:
    """The bus these meters share (settings of the first; check() makes sure the others agree)."""
    first, timeout = meters[0], max(m.timeout_s for m in meters)
    if isinstance(first, ModbusTcpMeter):
        return ModbusBus.tcp(first.host, first.port, timeout)
    return ModbusBus.rtu(first.device, first.baudrate, first.parity, first.stopbits, first.bytesize, timeout)


def _delay(meters: list[ModbusMeter]) -> float:
    return max((m.inter_request_delay_s for m in meters if isinstance(m, ModbusRtuMeter)), default=0.0)


def _by_bus(meters: list[ModbusMeter]) -> dict[tuple, list[ModbusMeter]]:
    """Meters that share a physical bus: the same TCP endpoint, or the same serial line."""
    buses: dict[tuple, list[ModbusMeter]] = {}
    for m in meters:
        key = ("tcp", m.host, m.port) if isinstance(m, ModbusTcpMeter) else ("rtu", m.device)
        buses.setdefault(key, []).append(m)
    return buses
