"""Firmware and diagnostics: the status notifications chargers send while they download firmware or upload
diagnostics and logs, and the gateway's own URLs filled into UpdateFirmware, GetDiagnostics and GetLog.

A firmware location given as a bare file name of {state_dir}/firmware becomes a link to it on the web port; an
absent or empty upload location becomes a link that takes one file. Each link carries a random token, the
charger's only credential (gateway/web/files.py serves them). A URL given by hand is passed through untouched.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from ocpp.routing import on

from drivers.ocpp.session import Session
from gateway.clock import parse_iso, utcnow
from gateway.commands import CommandError
from gateway.points import charger_point
from gateway.store.files import FIRMWARE_ACTIONS

log = logging.getLogger(__name__)

ACCEPTED = {None, "Accepted", "AcceptedCanceled"}  # None: a 1.6 UpdateFirmware answer says nothing
MAX_RETRY_WINDOW_S = 7 * 86400  # a link outlives the charger's retries, within reason
_TOKEN = re.compile(r"/files/(?:firmware|uploads)/([A-Za-z0-9_-]{32})/")
# requestId of the requests that need one and were sent without: increasing, so logs read in order.
_request_ids = itertools.count(int(time.time()) % 1_000_000_000)


@dataclass(frozen=True)
class Where:
    """Where a request carries its file's location."""

    part: str | None  # the object holding it ("firmware", "log"), None: the payload itself
    location: str
    retrieve: str | None = None  # firmware: when the charger fetches it, filled in (now) when absent
    request_id: bool = False  # the request has a requestId, filled in when absent


class _Files(Session):
    """What both versions share; each says where its requests carry locations."""

    LOCATIONS: ClassVar[dict[str, Where]] = {}

    async def outgoing(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        payload = await super().outgoing(action, payload)
        where = self.LOCATIONS.get(action)
        if where is None:
            return payload
        payload = dict(payload)  # the caller's stays as given (the audit shows what the operator asked)
        if where.request_id and "requestId" not in payload:
            payload["requestId"] = next(_request_ids)
        part = payload
        if where.part is not None:
            if not isinstance(payload.get(where.part, {}), dict):
                return payload  # the schema says what is wrong
            part = payload[where.part] = dict(payload.get(where.part, {}))
        now = utcnow()
        location = part.get(where.location)
        if action in FIRMWARE_ACTIONS:
            assert where.retrieve is not None
            part.setdefault(where.retrieve, self.now())
            if isinstance(location, str) and "://" not in location:
                start = max(now, _date(part[where.retrieve], now))
                part[where.location] = await self._firmware_link(action, location, start, payload)
        elif not location:
            part[where.location] = await self._upload_link(action, now, payload)
        return payload

    async def answered(self, action: str, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        await super().answered(action, payload, answer)
        where = self.LOCATIONS.get(action)
        if where is None:
            return
        part = payload if where.part is None else payload.get(where.part) or {}
        found = _TOKEN.search(str(part.get(where.location, "")))
        if found is None:
            return
        file_name = answer.get("fileName") or answer.get("filename")
        # GetDiagnostics answers without a file name when there is nothing to upload.
        accepted = bool(file_name) if action == "GetDiagnostics" else answer.get("status") in ACCEPTED
        await self.recorder.store.files.settle_link(found.group(1), self.id, accepted, file_name)
        if not accepted:
            log.info("%s refused, its link withdrawn charger=%s answer=%s", action, self.id, answer)

    async def _firmware_link(self, action: str, name: str, start: datetime, payload: dict[str, Any]) -> str:
        files = self.recorder.store.files
        if files.firmware_path(name) is None:
            raise CommandError("invalid", f"no firmware file {name!r} on the gateway: add it with PUT "
                               f"/api/v1/firmware/{name}, or give a URL")  # fmt: skip
        base = self._base_url()
        token = await files.new_link(self.id, action, start + self._valid(payload), file_name=name,
                                     request_id=payload.get("requestId"))  # fmt: skip
        url = f"{base}/files/firmware/{token}/{name}"
        log.info("firmware offered charger=%s file=%s request_id=%s", self.id, name, payload.get("requestId"))
        return url

    async def _upload_link(self, action: str, now: datetime, payload: dict[str, Any]) -> str:
        base, max_bytes = self._base_url(), int(self.links.files.max_upload_mb * 1024 * 1024)
        token = await self.recorder.store.files.new_link(
            self.id, action, now + self._valid(payload), request_id=payload.get("requestId"), max_bytes=max_bytes
        )
        return f"{base}/files/uploads/{token}/"

    def _valid(self, payload: dict[str, Any]) -> timedelta:
        retries, interval = payload.get("retries"), payload.get("retryInterval")
        extra = retries * interval if isinstance(retries, int) and isinstance(interval, int) else 0
        return timedelta(seconds=self.links.files.link_valid_s + min(max(extra, 0), MAX_RETRY_WINDOW_S))

    def _base_url(self) -> str:
        """Where the charger reaches the web port: as configured, else the address its own connection reached."""
        if self.links.files.public_url:
            return self.links.files.public_url
        if self.links.web_port is None:
            raise CommandError("unsupported", "the web server is not running: no file links to give")
        host = str(self.ws.local_address[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.links.web_port}"

    async def reported(self, kind: str, status: str, request_id: int | None = None) -> None:
        """A firmware, diagnostics or log status from the charger: on disk, then in the process image."""
        assert self.current is not None
        await self.recorder.store.files.status(self.id, kind, self.current.action, status, request_id)
        self.recorder.image.set(charger_point(self.id, kind), status)
        log.info("%s charger=%s status=%s request_id=%s", kind, self.id, status, request_id)

    # What both versions send alike.

    @on("FirmwareStatusNotification")
    async def on_firmware_status_notification(self, status: str, request_id: int | None = None, **_: Any) -> Any:
        await self.reported("firmware_status", status, request_id)
        return self._call_result.FirmwareStatusNotification()

    @on("LogStatusNotification")
    async def on_log_status_notification(self, status: str, request_id: int | None = None, **_: Any) -> Any:
        await self.reported("log_status", status, request_id)
        return self._call_result.LogStatusNotification()


def _date(text: Any, default: datetime) -> datetime:
    try:
        return parse_iso(text)
    except (ValueError, TypeError, AttributeError):
        return default  # the schema check that follows names it


class Files16(_Files):
    """OCPP 1.6J (with the security extension's SignedUpdateFirmware and GetLog)."""

    LOCATIONS: ClassVar[dict[str, Where]] = {
        "UpdateFirmware": Where(None, "location", "retrieveDate"),
        "SignedUpdateFirmware": Where("firmware", "location", "retrieveDateTime", request_id=True),
        "GetDiagnostics": Where(None, "location"),
        "GetLog": Where("log", "remoteLocation", request_id=True),
    }

    @on("DiagnosticsStatusNotification")
    async def on_diagnostics_status_notification(self, status: str, **_: Any) -> Any:
        await self.reported("diagnostics_status", status)
        return self._call_result.DiagnosticsStatusNotification()

    @on("SignedFirmwareStatusNotification")
    async def on_signed_firmware_status_notification(self, status: str, request_id: int | None = None,
                                                     **_: Any) -> Any:  # fmt: skip
        await self.reported("firmware_status", status, request_id)
        return self._call_result.SignedFirmwareStatusNotification()


class Files201(_Files):
    """OCPP 2.0.1."""

    LOCATIONS: ClassVar[dict[str, Where]] = {
        "UpdateFirmware": Where("firmware", "location", "retrieveDateTime", request_id=True),
        "GetLog": Where("log", "remoteLocation", request_id=True),
    }

    @on("PublishFirmwareStatusNotification")
    async def on_publish_firmware_status_notification(self, status: str, request_id: int | None = None,
                                                      **_: Any) -> Any:  # fmt: skip
        await self.reported("publish_firmware_status", status, request_id)
        return self._call_result.PublishFirmwareStatusNotification()
