"""What every benchmark needs: free loopback ports, a process pinned to a core, its CPU time, a port to wait for."""

from __future__ import annotations

import os
import resource
import socket
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(core: int) -> None:
    """Run this process (and what it starts) on one core, so that figures compare across machines."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {core})


def cpu_s() -> float:
    """CPU time this process has used, user and system, as the kernel counts it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_for_port(port: int, what: str, timeout: float = 30.0) -> None:
    """Block until something listens on the loopback port (a peer the benchmark started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port}")
