"""systemd's notify protocol (Type=notify, WatchdogSec), without a dependency: a datagram to $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send READY=1, STOPPING=1, WATCHDOG=1, STATUS=...; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
        return True
    except OSError as e:
        log.warning("cannot notify systemd: %s", e)
        return False


def watchdog_interval() -> float | None:
    """Half of WatchdogSec, when systemd asked this process to be watched."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


async def feed_watchdog(interval: float) -> None:
    """Pings from the event loop itself: if the loop stalls, the pings stop and systemd restarts us."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
