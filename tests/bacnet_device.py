"""A BACnet/IP device for the tests, built with BAC0 (an implementation apart from the driver's own use of
bacpypes3): an analog input, an analog value and a binary input whose present values the test sets, all
offering COV."""

from __future__ import annotations

import asyncio
import socket

from bacpypes3.primitivedata import ObjectIdentifier


def free_udp_port() -> int:
    """A UDP port nobody holds. bacpypes3 binds with SO_REUSEPORT, so two stacks on one port would share it
    without a word: probe without that option."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BacnetTestPeer:
    def __init__(self, port: int, device_id: int = 1001) -> None:
        self.port = port
        self.device_id = device_id
        self._bacnet = None

    async def start(self) -> BacnetTestPeer:
        import BAC0
        from BAC0.core.devices.local.factory import ObjectFactory, analog_input, analog_value, binary_input

        BAC0.log_level("error", log_this=False)
        self._bacnet = BAC0.start(ip=f"127.0.0.1/24:{self.port}", deviceId=self.device_id, ping=False,
                                  localObjName=f"test-device-{self.device_id}")  # fmt: skip
        for task in asyncio.all_tasks():  # BAC0 leaves a task polling every 10 ms; a test device needs none
            if task.get_coro().__qualname__ == "Lite._i_am":
                task.cancel()
        ObjectFactory.clear_objects()  # BAC0's object registry is global to the process
        analog_input(instance=1, name="load", presentValue=12000.0, properties={"covIncrement": 1.0})
        analog_value(instance=2, name="setpoint", presentValue=21.5, properties={"covIncrement": 0.1})
        binary_input(instance=3, name="heating", presentValue="inactive").add_objects_to_application(self._bacnet)
        return self

    def set(self, object_id: str, value: object) -> None:
        self._bacnet.this_application.app.get_object_id(ObjectIdentifier(object_id)).presentValue = value

    async def stop(self) -> None:
        if self._bacnet is not None:
            await self._bacnet._disconnect()  # BAC0's own coroutine; its public disconnect() returns a task
            self._bacnet = None
