"""The simulated charger downloads firmware and uploads diagnostics and logs over HTTP, and reports the
steps as a real one does: it answers first, then works outside the handler, trying again as the request says.

What it installed is kept on the charger: ``sim.firmware_version`` (the file's name) and ``sim.firmware_sha256``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from ocpp.routing import on
from ocpp.v16 import call as call16, call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call as call201, call_result as result201
from ocpp.v201.enums import Action as Action201

from gateway.clock import parse_iso, utcnow
from gateway.sim.charger import Offline

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 30.0
Report = Callable[[str], Awaitable[None]]


class _Transfers:
    """What both versions do alike; they differ in how they report."""

    sim: Any
    _call: Any  # ocpp.v16.call or ocpp.v201.call, from the library's ChargePoint
    _call_result: Any

    def _reporter(self, message: Callable[..., Any], **fields: Any) -> Report:
        """How one transfer tells its steps: `message` (a status notification) with its status and `fields`."""

        async def report(status: str) -> None:
            with contextlib.suppress(Offline):
                await self.sim.call(message(status=status, **fields))

        return report

    @on("GetLog")
    def on_get_log(self, log: dict[str, Any], log_type: str, request_id: int, retries: int | None = None,
                   retry_interval: int | None = None, **_: Any) -> Any:  # fmt: skip
        """Both versions alike (the library's ChargePoint of each gives its message classes)."""
        file_name = self._file_name(log_type)
        report = self._reporter(self._call.LogStatusNotification, request_id=request_id)
        self.sim.spawn(self._upload(log["remote_location"], file_name, log_type, False, retries, retry_interval,
                                    report, "UploadFailure"))  # fmt: skip
        return self._call_result.GetLog(status="Accepted", filename=file_name)

    async def _update(self, location: str, retrieve: str | None, retries: int | None, interval: int | None,
                      report: Report, signed: bool = False) -> None:  # fmt: skip
        """Wait for the retrieve date, download, 'install'."""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            await asyncio.sleep(max(0.0, (parse_iso(retrieve) - utcnow()).total_seconds()))  # type: ignore[arg-type]
        await report("Downloading")
        content = await _attempts(lambda client: _download(client, location), retries, interval)
        if content is None:
            await report("DownloadFailed")
            return
        await report("Downloaded")
        if signed:
            await report("SignatureVerified")  # the simulator trusts every signature
        await report("Installing")
        self.sim.firmware_version = unquote(urlsplit(location).path.rsplit("/", 1)[-1])
        self.sim.firmware_sha256 = hashlib.sha256(content).hexdigest()
        await report("Installed")

    async def _upload(self, url: str, file_name: str, kind: str, multipart: bool, retries: int | None,
                      interval: int | None, report: Report, failed: str) -> None:  # fmt: skip
        await report("Uploading")
        content = self._generated(kind)

        async def send(client: httpx.AsyncClient) -> bool:
            if multipart:  # to the location as given, the file in the form (how 1.6 chargers post diagnostics)
                response = await client.post(url, files={"file": (file_name, content, "text/plain")})
            else:  # to the location + the file's name
                response = await client.put(f"{url.rstrip('/')}/{file_name}", content=content)
            response.raise_for_status()
            return True

        await report("Uploaded" if await _attempts(send, retries, interval) else failed)

    def _file_name(self, kind: str) -> str:
        return f"{kind}-{self.sim.spec.id}-{utcnow():%Y%m%dT%H%M%SZ}.log"

    def _generated(self, kind: str) -> bytes:
        """A plausible file: the charger's state, then a log of its last heartbeats."""
        sim = self.sim
        firmware = sim.firmware_version
        lines = [f"# {kind} of simulated charger {sim.spec.id} ({sim.spec.vendor} {sim.spec.model}), {sim.now()}",
                 f"firmware={firmware} ocpp={sim.spec.version} boots={sim.boots}"]  # fmt: skip
        lines += [f"evse {e.id}: status={e.status} meter_wh={e.meter_wh:.0f} power_w={e.power_w:.0f} "
                  f"transaction={e.tx_id}" for e in sim.evses.values()]  # fmt: skip
        lines += [f"{sim.now()} INFO heartbeat {n} accepted" for n in range(64)]
        return ("\n".join(lines) + "\n").encode()


async def _download(client: httpx.AsyncClient, url: str) -> bytes:
    response = await client.get(url)
    response.raise_for_status()
    return response.content


async def _attempts(work: Callable[[httpx.AsyncClient], Awaitable[Any]], retries: int | None,
                    interval: int | None) -> Any:  # fmt: skip
    """work(client), tried again `retries` times `interval` s apart; None once every try failed."""
    tries = 1 + max(retries or 0, 0)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
        for attempt in range(1, tries + 1):
            try:
                return await work(client)
            except httpx.HTTPError as e:
                log.info("sim transfer failed (try %d of %d): %s", attempt, tries, e)
                if attempt < tries:
                    await asyncio.sleep(max(interval or 0, 0))
    return None


class Files16(_Transfers):
    """Handlers mixed into the 1.6 simulated charger's protocol; ``self.sim`` is the charger."""

    @on(Action16.update_firmware)
    def on_update_firmware(self, location: str, retrieve_date: str, retries: int | None = None,
                           retry_interval: int | None = None, **_: Any) -> result16.UpdateFirmware:  # fmt: skip
        report = self._reporter(call16.FirmwareStatusNotification)
        self.sim.spawn(self._update(location, retrieve_date, retries, retry_interval, report))
        return result16.UpdateFirmware()

    @on(Action16.signed_update_firmware)
    def on_signed_update_firmware(self, request_id: int, firmware: dict[str, Any], retries: int | None = None,
                                  retry_interval: int | None = None,
                                  **_: Any) -> result16.SignedUpdateFirmware:  # fmt: skip
        report = self._reporter(call16.SignedFirmwareStatusNotification, request_id=request_id)
        self.sim.spawn(self._update(firmware["location"], firmware.get("retrieve_date_time"), retries, retry_interval,
                                    report, signed=True))  # fmt: skip
        return result16.SignedUpdateFirmware(status="Accepted")

    @on(Action16.get_diagnostics)
    def on_get_diagnostics(self, location: str, retries: int | None = None, retry_interval: int | None = None,
                           **_: Any) -> result16.GetDiagnostics:  # fmt: skip
        file_name = self._file_name("diagnostics")
        report = self._reporter(call16.DiagnosticsStatusNotification)
        self.sim.spawn(self._upload(location, file_name, "diagnostics", True, retries, retry_interval, report,
                                    "UploadFailed"))  # fmt: skip
        return result16.GetDiagnostics(file_name=file_name)


class Files201(_Transfers):
    """Handlers mixed into the 2.0.1 simulated charger's protocol; ``self.sim`` is the charger."""

    @on(Action201.update_firmware)
    def on_update_firmware(self, request_id: int, firmware: dict[str, Any], retries: int | None = None,
                           retry_interval: int | None = None, **_: Any) -> result201.UpdateFirmware:  # fmt: skip
        report = self._reporter(call201.FirmwareStatusNotification, request_id=request_id)
        self.sim.spawn(self._update(firmware["location"], firmware.get("retrieve_date_time"), retries, retry_interval,
                                    report))  # fmt: skip
        return result201.UpdateFirmware(status="Accepted")
