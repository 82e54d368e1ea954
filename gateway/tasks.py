"""Cancellation that is not lost.

On Python 3.11, ``asyncio.wait_for`` (which pymodbus, asyncua and others await inside) can swallow a
cancellation that arrives just as the future it waits for completes (fixed in 3.12). The task then carries
on as if nothing happened, and whoever cancelled it -- a TaskGroup winding down the gateway -- waits for it
forever. Loops that call such libraries check after each round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def raise_if_cancelled() -> None:
    """Raise CancelledError when the current task was asked to stop, even if a library swallowed the request."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def first_to_end(*coros: Coroutine[Any, Any, Any]) -> None:
    """Run the coroutines together until one of them ends; cancel the others; raise what the first raised.

    A TaskGroup whose body only waits would do, but on Python 3.11 a child failing while the parent already
    waits in the group's exit leaves the parent marked as cancelled (fixed in 3.12): the next
    raise_if_cancelled() would then end a part that only lost a connection.
    """
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
