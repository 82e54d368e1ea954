"""uvicorn inside the gateway's own event loop (no thread, no second process)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from gateway.settings import split_listen

log = logging.getLogger(__name__)


class _InLoopServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The gateway owns SIGTERM/SIGINT and stops every part in order; uvicorn must not take them over.
        yield


class WebServer:
    def __init__(self, app: FastAPI, listen: str) -> None:
        self.host, port = split_listen(listen)
        # Bind now, so the port is known (and taken) before anything starts; port 0 picks a free one.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._socket = socket.create_server((self.host, port), family=family, reuse_port=False)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, server_header=False,
                                proxy_headers=False, timeout_graceful_shutdown=5)  # fmt: skip
        self._server = _InLoopServer(config)

    async def run(self, started: asyncio.Event | None = None) -> None:
        log.info("web console and API on http://%s:%d/ (API under /api/v1)", self.host, self.port)
        serving = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        try:
            while not self._server.started and not serving.done():
                await asyncio.sleep(0.01)
            if started is not None:
                started.set()
            # Shielded: cancelling a task that awaits another cancels that one too, and uvicorn cancelled in its
            # main loop never closes its listener -- the socket would be closed under the event loop's feet, its
            # fd still registered for reading (a later pipe or socket given that fd number is never heard).
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            self._server.should_exit = True
            await asyncio.gather(serving, return_exceptions=True)
            raise
        finally:
            self._socket.close()

    def health(self) -> dict[str, Any]:
        return {"status": "ok" if self._server.started else "starting", "port": self.port}
