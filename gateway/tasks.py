"""Cancellation that is not lost.

On Python 3.11, ``asyncio.wait_for`` (which pymodbus, asyncua and others await inside) can swallow a
cancellation that arrives just as the future it waits for completes (fixed in 3.12). The task then carries
on as if nothing happened, and whoever cancelled it -- a TaskGroup winding down the gateway -- waits for it
forever. Loops that call such libraries check after each round.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise CancelledError when the current task was asked to stop, even if a library swallowed the request."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
