"""The requests waiting for one charger, in two lanes; OCPP-J allows one call in flight, so they take turns.

- The control lane carries the load cap's limits (and what they need: the charger's capabilities). Each request
  has a key ("dynamic:1", "baseline", ...): a newer request with the same key replaces one still waiting, whose
  caller is told it was superseded -- only the newest limit per EVSE goes out, and a decrease never waits
  behind the increase it overrides. The control lane always goes first.
- The maintenance lane is a bounded FIFO for everything else (operators, MQTT, OPC UA, the relay): when full, a
  new request is refused at once ("busy"), so a flood of maintenance can delay a limit by one round trip at most
  -- the call already in flight.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.commands import CommandError


@dataclass(eq=False)
class Waiting:
    action: str
    payload: dict[str, Any]
    future: asyncio.Future[dict[str, Any]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    sent: bool = False  # on the wire (or answered): no longer the queue's to time out


class Lanes:
    def __init__(self, maintenance_size: int) -> None:
        self._control: dict[str, Waiting] = {}
        self._maintenance: deque[Waiting] = deque()
        self._size = maintenance_size
        self._ready = asyncio.Event()
        self.superseded = 0  # control requests replaced by a newer one before they were sent

    def put(self, request: Waiting, key: str | None = None) -> None:
        """Queue a request: in the control lane under `key`, else in the maintenance lane (CommandError busy when
        it is full)."""
        if key is None:
            self._maintenance = deque(w for w in self._maintenance if not w.future.done())  # given up on: no room
            if len(self._maintenance) >= self._size:
                raise CommandError("busy", f"{len(self._maintenance)} requests are waiting for this charger")
            self._maintenance.append(request)
        else:
            older = self._control.pop(key, None)
            if older is not None and not older.future.done():
                self.superseded += 1
                older.future.set_exception(CommandError("superseded", f"a newer {key} request replaced it"))
                older.future.exception()  # its caller may be gone: retrieved, so never reported as unhandled
            self._control[key] = request
        self._ready.set()

    def take(self) -> Waiting | None:
        """The next request to send, control first; None when nothing waits."""
        while self._control:
            request = self._control.pop(next(iter(self._control)))
            if not request.future.done():
                return request
        while self._maintenance:
            request = self._maintenance.popleft()
            if not request.future.done():
                return request
        self._ready.clear()
        return None

    async def next(self) -> Waiting:
        while (request := self.take()) is None:
            await self._ready.wait()
        return request

    def __len__(self) -> int:
        return len(self._control) + len(self._maintenance)

    def fail_all(self, error: CommandError) -> None:
        for request in [*self._control.values(), *self._maintenance]:
            if not request.future.done():
                request.future.set_exception(error)
                request.future.exception()
        self._control.clear()
        self._maintenance.clear()
