"""Logging: one logger per module, key=value context in the message, JSON lines when EVEDGE_LOG_FORMAT=json.

EVEDGE_LOG_LEVEL sets the level (info by default); every OCPP frame is logged by ``drivers.ocpp.wire`` at
debug only, so a busy site does not wear out its SD card.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from datetime import UTC, datetime

from gateway.clock import iso

# Below DEBUG, the libraries say only what matters. What goes wrong on a bus or a link our drivers report
# themselves, once, with the meter's name; so pymodbus (an ERROR and a hex dump of the last frames on every
# timeout) and asyncua's client (tracebacks from its publish loop, CloseSession and late answers when a server
# goes away) keep all but CRITICAL to themselves.
_QUIET = ("websockets", "uvicorn.error", "aiosqlite", "ocpp", "httpx", "drivers.ocpp.wire", "asyncua")
_DRIVERS_SPEAK = ("pymodbus", "asyncua.client")
LIBRARY_LEVELS = dict.fromkeys(_QUIET, logging.WARNING) | dict.fromkeys(_DRIVERS_SPEAK, logging.CRITICAL)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": iso(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging API
        return iso(datetime.fromtimestamp(record.created, UTC))


def setup_logging(level: str | None = None, fmt: str | None = None) -> None:
    level = (level or os.environ.get("EVEDGE_LOG_LEVEL") or "info").upper()
    fmt = fmt or os.environ.get("EVEDGE_LOG_FORMAT") or "text"
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries(level)


def quiet_libraries(level: str) -> None:
    """The libraries' loggers at LIBRARY_LEVELS, unless the gateway logs at DEBUG."""
    if level.upper() != "DEBUG":
        for name, library_level in LIBRARY_LEVELS.items():
            logging.getLogger(name).setLevel(library_level)
