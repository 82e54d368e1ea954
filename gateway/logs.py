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

_QUIET = ("websockets", "uvicorn.error", "aiosqlite", "ocpp", "httpx", "drivers.ocpp.wire", "asyncua")
_ERRORS_ONLY = ("pymodbus",)  # our drivers report what goes wrong on a bus, once, with the meter's name


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
    if level != "DEBUG":
        for name in _QUIET:
            logging.getLogger(name).setLevel(logging.WARNING)
        for name in _ERRORS_ONLY:
            logging.getLogger(name).setLevel(logging.ERROR)
