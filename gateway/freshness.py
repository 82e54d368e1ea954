"""When a device's values turn bad: ``stale_after_s`` after it last proved alive, on a timer of their own.

Not when a request to a silent device finally times out, nor once a lost session has been closed: a hung peer
(its socket open, nothing answering) would keep its values good a request timeout or two longer than promised.
Each driver says what proves life -- a Modbus answer, an OPC UA read, change or keep-alive, a BACnet answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Freshness:
    def __init__(self, stale_after_s: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:  # fmt: skip
        self.stale_after_s = stale_after_s
        self.last_alive: float | None = None
        self.stale = False
        self._clock = clock
        self._sleep = sleep
        self._since: float | None = None  # when watching began: a device never heard goes stale from there
        self._back = asyncio.Event()

    def alive(self) -> None:
        """The device answered: its deadline moves on, and a stale device is fresh again."""
        self.last_alive = self._clock()
        self.stale = False
        self._back.set()

    def deadline(self) -> float:
        start = self.last_alive if self.last_alive is not None else self._since
        return (start or 0.0) + self.stale_after_s

    async def expired(self) -> None:
        """Return at the deadline; each proof of life on the way moves it."""
        if self._since is None:
            self._since = self._clock()
        while (wait := self.deadline() - self._clock()) > 0:
            await self._sleep(wait)  # a proof of life only moves the deadline later: look again then
        self.stale = True

    async def watch(self, went_stale: Callable[[], None]) -> None:
        """Call `went_stale` at every deadline the device misses, once until it proves alive again."""
        self._since = self._clock()
        while True:
            await self.expired()
            self._back.clear()
            went_stale()
            await self._back.wait()
