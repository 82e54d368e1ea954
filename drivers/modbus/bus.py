"""Our thin layer over pymodbus: one physical bus (a TCP endpoint or a serial line) and one way to read it.

pymodbus changes its API in minor releases; nothing else in evedge touches it, so an upgrade is one file.
Reconnection is ours (the poller retries with its own backoff), so pymodbus's own is switched off.
"""

from __future__ import annotations

import asyncio
import logging

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from gateway.tasks import raise_if_cancelled

log = logging.getLogger(__name__)

# Exception codes with which a Modbus TCP gateway says the device behind it did not answer.
_GATEWAY_SILENCE = {10, 11}
# A TCP link is dropped and made again only after this many failures in a row: a single silent unit behind
# a gateway must not cost the others their connection (pymodbus skips answers that come too late).
CLOSE_AFTER = 3


class BusError(Exception):
    """No answer: no connection, a timeout, or a gateway that reached nobody."""


class Refused(Exception):
    """The device answered with an exception: it is there, but will not give these registers."""


class ModbusBus:
    def __init__(self, name: str, client: AsyncModbusTcpClient | AsyncModbusSerialClient, serial: bool,
                 timeout_s: float) -> None:  # fmt: skip
        self.name = name
        self._client = client
        self._serial = serial
        self._timeout_s = timeout_s  # pymodbus's own, the longest of the bus's meters
        self._failures = 0  # in a row

    @classmethod
    def tcp(cls, host: str, port: int, timeout_s: float) -> ModbusBus:
        client = AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=0, reconnect_delay=0)
        return cls(f"tcp:{host}:{port}", client, serial=False, timeout_s=timeout_s)

    @classmethod
    def rtu(cls, device: str, baudrate: int, parity: str, stopbits: int, bytesize: int, timeout_s: float) -> ModbusBus:
        client = AsyncModbusSerialClient(device, baudrate=baudrate, parity=parity, stopbits=stopbits,
                                         bytesize=bytesize, timeout=timeout_s, retries=0, reconnect_delay=0)  # fmt: skip
        return cls(f"rtu:{device}", client, serial=True, timeout_s=timeout_s)

    async def read(self, unit: int, kind: str, address: int, count: int, timeout_s: float) -> list[int]:
        """`count` registers from `address` of `unit`, input or holding, waiting at most `timeout_s`."""
        if not self._client.connected:
            try:
                async with asyncio.timeout(timeout_s * 2):
                    connected = await self._client.connect()
            except (TimeoutError, OSError, ModbusException) as e:
                raise BusError(f"cannot connect to {self.name}: {e or type(e).__name__}") from None
            if not connected:
                raise BusError(f"cannot connect to {self.name}")
        method = self._client.read_input_registers if kind == "input" else self._client.read_holding_registers
        try:
            if timeout_s < self._timeout_s:  # a meter quicker to give up than the bus's slowest
                async with asyncio.timeout(timeout_s):
                    answer = await method(address, count=count, device_id=unit)
            else:  # pymodbus times out by itself; no second timer on every read
                answer = await method(address, count=count, device_id=unit)
        except (ModbusException, TimeoutError, OSError) as e:
            raise_if_cancelled()  # a stop request turned into a timeout is still a stop request
            self._failed()
            raise BusError(f"unit {unit} did not answer ({type(e).__name__})") from None
        raise_if_cancelled()  # pymodbus's wait_for may have swallowed one (Python 3.11)
        if answer.isError():
            code = getattr(answer, "exception_code", None)
            if code in _GATEWAY_SILENCE:
                self._failed()
                raise BusError(f"unit {unit} did not answer its gateway (exception code {code})")
            self._failures = 0
            raise Refused(f"unit {unit} refused {kind} registers {address}..{address + count - 1} "
                          f"(exception code {code})")  # fmt: skip
        self._failures = 0
        if len(answer.registers) < count:
            raise Refused(f"unit {unit} sent {len(answer.registers)} registers for {count}")
        return list(answer.registers[:count])

    def _failed(self) -> None:
        self._failures += 1
        # A serial line out of step after a lost answer is cleared by reopening it; a TCP link only when
        # failures keep coming (a half-open connection), not for every silent unit behind a gateway.
        if self._serial or self._failures >= CLOSE_AFTER:
            self._client.close()

    def close(self) -> None:
        self._client.close()
