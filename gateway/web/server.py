"""uvicorn inside the gateway's own event loop (no thread, no second process), over HTTPS when asked to.

Beside it run the web layer's own background parts (``app.state.background``: the console's recent values, ...)
and a watch on the event loop's lag -- how late a timer fires -- which ``health()`` reports: the loop serves the
chargers too, so a page that held it would show there first.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from gateway.settings import split_listen

log = logging.getLogger(__name__)

TlsFiles = Callable[[], Awaitable[tuple[Path, Path]]]  # the server certificate chain and key, made or renewed
RENEW_EVERY_S = 12 * 3600.0
LAG_EVERY_S, LAG_WINDOW_S = 0.25, 60.0  # health reports the lag of the last minute
RESTART_AFTER_S = 5.0


class _InLoopServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The gateway owns SIGTERM/SIGINT and stops every part in order; uvicorn must not take them over.
        yield


class WebServer:
    def __init__(self, app: FastAPI, listen: str, tls: TlsFiles | None = None) -> None:
        self.app = app
        self.host, port = split_listen(listen)
        # Bind now, so the port is known (and taken) before anything starts; port 0 picks a free one.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._socket = socket.create_server((self.host, port), family=family, reuse_port=False)
        self.port: int = self._socket.getsockname()[1]
        self.tls = tls
        self.lags: collections.deque[float] = collections.deque(maxlen=int(LAG_WINDOW_S / LAG_EVERY_S))  # s late
        app.state.base_url = _base_url(self.host, self.port, tls is not None)
        self._server: _InLoopServer | None = None

    async def run(self, started: asyncio.Event | None = None) -> None:
        config = uvicorn.Config(self.app, lifespan="off", log_config=None, access_log=False, server_header=False,
                                proxy_headers=False, timeout_graceful_shutdown=5)  # fmt: skip
        if self.tls is not None:
            config.ssl_certfile, config.ssl_keyfile = (str(p) for p in await self.tls())
        self._server = server = _InLoopServer(config)
        log.info("web console and API on %s/ (API under /api/v1)", self.app.state.base_url)
        serving = asyncio.create_task(server.serve(sockets=[self._socket]))
        helpers: list[asyncio.Task[None]] = []
        try:
            while not server.started and not serving.done():
                await asyncio.sleep(0.01)
            background = getattr(self.app.state, "background", [])  # the console's (an app of a test has none)
            helpers = [asyncio.create_task(_kept(part)) for part in [self._watch_lag, *background]]
            if self.tls is not None:
                helpers.append(asyncio.create_task(self._keep_renewed(config)))
            if started is not None:
                started.set()
            # Shielded: cancelling a task that awaits another cancels that one too, and uvicorn cancelled in its
            # main loop never closes its listener -- the socket would be closed under the event loop's feet, its
            # fd still registered for reading (a later pipe or socket given that fd number is never heard).
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            if (stopping := getattr(self.app.state, "stopping", None)) is not None:
                stopping.set()  # live streams end at once, not after the graceful-shutdown timeout
            server.should_exit = True
            await asyncio.gather(serving, return_exceptions=True)
            raise
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self._socket.close()

    async def _keep_renewed(self, config: uvicorn.Config) -> None:
        """New handshakes get the certificate as it is now (the site CA renews its own before it expires)."""
        assert self.tls is not None
        while True:
            await asyncio.sleep(RENEW_EVERY_S)
            try:
                cert, key = await self.tls()
                config.ssl.load_cert_chain(cert, key)  # type: ignore[union-attr]
            except (OSError, ValueError, ssl.SSLError):
                log.exception("could not renew the web server's certificate; the one in use stays")

    async def _watch_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_EVERY_S
            await asyncio.sleep(LAG_EVERY_S)
            self.lags.append(max(0.0, loop.time() - due))

    def health(self) -> dict[str, Any]:
        started = self._server is not None and self._server.started
        lags = sorted(self.lags)
        lag = {"p99": round(lags[int(0.99 * (len(lags) - 1))] * 1000, 1), "max": round(lags[-1] * 1000, 1)} \
            if lags else None  # fmt: skip
        return {"status": "ok" if started else "starting", "port": self.port, "tls": self.tls is not None,
                "loop_lag_ms": lag}  # fmt: skip


async def _kept(part: Callable[[], Awaitable[None]]) -> None:
    """A helper that fails is logged and started again: a page's curve must never take the web server down."""
    while True:
        try:
            await part()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("web helper failed, starting it again in %g s", RESTART_AFTER_S)
            await asyncio.sleep(RESTART_AFTER_S)


def _base_url(host: str, port: int, tls: bool) -> str:
    """How a person reaches the console, for the log: this machine's name when it listens on every address."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"
