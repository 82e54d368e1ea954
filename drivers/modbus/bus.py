"""Our thin layer over pymodbus: one physical bus (a TCP endpoint or a serial line) and one way to read it.

pymodbus changes its API in minor releases; nothing else in evedge touches it, so an upgrade is one file.
Reconnection is ours (the poller retries with its own backoff), so pymodbus's own is switched off.
"""

from __future__ import annotations

import asyncio
import logging

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

log = logging.getLogger(__name__)


class BusError(Exception):
    """The read failed: no connection, no answer in time, or the device answered with an exception."""


class ModbusBus:
    def __init__(self, name: str, client: AsyncModbusTcpClient | AsyncModbusSerialClient, timeout_s: float) -> None:
        self.name = name
        self._client = client
        self._timeout_s = timeout_s

    @classmethod
    def tcp(cls, host: str, port: int, timeout_s: float) -> ModbusBus:
        client = AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=0, reconnect_delay=0)
        return cls(f"tcp:{host}:{port}", client, timeout_s)

    @classmethod
    def rtu(cls, device: str, baudrate: int, parity: str, stopbits: int, bytesize: int, timeout_s: float) -> ModbusBus:
        client = AsyncModbusSerialClient(device, baudrate=baudrate, parity=parity, stopbits=stopbits,
                                         bytesize=bytesize, timeout=timeout_s, retries=0, reconnect_delay=0)  # fmt: skip
        return cls(f"rtu:{device}", client, timeout_s)

    async def read(self, unit: int, kind: str, address: int, count: int) -> list[int]:
        """`count` registers from `address` of `unit`, input or holding."""
        if not self._client.connected:
            try:
                async with asyncio.timeout(self._timeout_s * 2):
                    connected = await self._client.connect()
            except (TimeoutError, OSError, ModbusException) as e:
                raise BusError(f"cannot connect to {self.name}: {e or type(e).__name__}") from None
            if not connected:
                raise BusError(f"cannot connect to {self.name}")
        method = self._client.read_input_registers if kind == "input" else self._client.read_holding_registers
        try:
            answer = await method(address, count=count, device_id=unit)
        except (ModbusException, TimeoutError, OSError) as e:
            self._client.close()  # a lost answer can leave the line out of step: start clean
            raise BusError(f"unit {unit} did not answer ({type(e).__name__})") from None
        if answer.isError():
            raise BusError(f"unit {unit} refused {kind} registers {address}..{address + count - 1} "
                           f"(exception code {getattr(answer, 'exception_code', '?')})")  # fmt: skip
        if len(answer.registers) < count:
            raise BusError(f"unit {unit} sent {len(answer.registers)} registers for {count}")
        return list(answer.registers[:count])

    def close(self) -> None:
        self._client.close()
