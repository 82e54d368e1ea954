"""Simulated Modbus meters: a pymodbus server (TCP, or RTU on a serial line) whose registers are asked for at
each read, and the grid meter of a simulated site.

The registers a meter holds come from a function of the moment, so a simulated grid meter always shows the
site as it is: the building's load, which varies over the day, plus what the simulated EVs draw. How point
values become registers (a profile's map) is given by the caller, so this module needs no driver.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway.clock import utcnow

Words = dict[tuple[str, int], int]  # (input | holding, address) -> register value


@dataclass
class SimMeter:
    """One unit on the bus: the registers it holds right now, over the address spans it answers for."""

    unit: int
    registers: Callable[[], Words]
    spans: dict[str, tuple[int, int]]  # kind -> (first address, count)
    answering: bool = True  # False: it stays silent, as a meter with a broken wire does
    reads: int = 0

    def device(self) -> SimDevice:
        def block(kind: str) -> list[SimData]:
            first, count = self.spans.get(kind, (0, 1))
            return [SimData(first, count=count, values=0, datatype=DataType.REGISTERS)]

        bits = [SimData(0, count=1, values=False, datatype=DataType.BITS)]
        return SimDevice(id=self.unit, simdata=(bits, bits, block("holding"), block("input")), action=self._read)

    async def _read(self, function_code: int, start: int, address: int, count: int, registers: list[int],
                    values: object) -> None:  # fmt: skip
        if not self.answering:
            await asyncio.Event().wait()  # never answers; the client gives up
        kind = "input" if function_code == 4 else "holding"
        now = self.registers()
        for k in range(count):
            registers[address - start + k] = now.get((kind, address + k), 0)
        self.reads += 1


class SimModbusServer:
    """Meters on one simulated bus, served until cancelled."""

    def __init__(self, meters: list[SimMeter]) -> None:
        self.meters = meters

    async def serve_tcp(self, host: str, port: int, started: asyncio.Event | None = None) -> None:
        server = ModbusTcpServer([m.device() for m in self.meters], address=(host, port))
        await self._serve(server, started)

    async def serve_rtu(self, device: str, baudrate: int = 9600, started: asyncio.Event | None = None) -> None:
        server = ModbusSerialServer([m.device() for m in self.meters], port=device, baudrate=baudrate)
        await self._serve(server, started)

    @staticmethod
    async def _serve(server: ModbusTcpServer | ModbusSerialServer, started: asyncio.Event | None) -> None:
        task = asyncio.create_task(server.serve_forever())
        try:
            while not server.is_active() and not task.done():
                await asyncio.sleep(0.01)
            if started is not None:
                started.set()
            await task
        finally:
            await server.shutdown()


@dataclass
class GridMeterModel:
    """What the grid meter of a simulated site reads: the building plus the EVs, per phase, and the energy
    counted since it started. ``ev_power_w`` tells the EVs' draw per phase at the moment of the read."""

    ev_power_w: Callable[[], tuple[float, float, float]]
    base_w: float = 15000.0  # the building at night
    peak_w: float = 35000.0  # ... and early in the afternoon
    noise_w: float = 500.0  # the building's load moves by up to this from one read to the next
    voltage_v: float = 230.0
    clock: Callable[[], datetime] = utcnow
    energy_import_wh: float = 12_345_000.0
    energy_export_wh: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    _last: float | None = None

    def building_w(self, now: datetime) -> float:
        hour = now.hour + now.minute / 60
        daylight = max(0.0, math.sin(math.pi * (hour - 6) / 16)) if 6 <= hour <= 22 else 0.0
        return self.base_w + (self.peak_w - self.base_w) * daylight + self.rng.uniform(-self.noise_w, self.noise_w)

    def values(self) -> dict[str, float]:
        now = self.clock()
        building = self.building_w(now) / 3
        ev = self.ev_power_w()
        phases = [building + ev[n] for n in range(3)]
        total = sum(phases)
        mono = time.monotonic()
        if self._last is not None and total > 0:
            self.energy_import_wh += total * (mono - self._last) / 3600
        self._last = mono
        values = {"power_w": total, "frequency_hz": 50.0 + self.rng.uniform(-0.02, 0.02),
                  "energy_import_wh": self.energy_import_wh, "energy_export_wh": self.energy_export_wh}  # fmt: skip
        for n, watts in enumerate(phases, start=1):
            volts = self.voltage_v + self.rng.uniform(-2, 2)
            values |= {f"power_w_l{n}": watts, f"voltage_v_l{n}": volts, f"current_a_l{n}": watts / volts}
        return values
