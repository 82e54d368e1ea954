"""Firmware files served to chargers, and the diagnostics and log files chargers upload.

Two routers. ``public`` is outside /api/v1, for chargers, which have no bearer token: the random token of a link
the gateway put in a request (drivers/ocpp/files.py) is the credential, for one charger, one request and a
limited time. ``router`` is the API under /api/v1: the files received, and the firmware the site keeps.

Uploads arrive as a raw body (PUT) or as multipart/form-data (POST, as most chargers send them), streamed to
disk (gateway/store/files.py puts a file in place only once it is complete and on disk).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.requests import ClientDisconnect

from gateway.auth import Actor, Role
from gateway.clock import utcnow
from gateway.store.files import FIRMWARE_ACTIONS, Incoming, TooLarge, check_file_name, check_firmware_name, disk_name
from gateway.web.deps import ChargerId, Ctx, Limit, Operator, Reader, known_charger, require

log = logging.getLogger(__name__)

router = APIRouter(tags=["files"])
public = APIRouter(tags=["files for chargers"], include_in_schema=False)

Admin = Annotated[Actor, Depends(require(Role.admin))]
Token = Annotated[str, Path(min_length=1, max_length=64, description="The link's token, as the request carried it")]
FirmwareName = Annotated[str, Path(max_length=128, description="Firmware file name")]
MULTIPART_SLACK = 64 * 1024  # what a form's boundaries and headers may add to the file's own size
MAX_PART_HEADERS, MAX_SKIPPED = 16 * 1024, 1024 * 1024  # a part's header block; form fields besides the file


# -- for chargers --------------------------------------------------------------------------------------------


@public.api_route("/files/firmware/{token}/{name}", methods=["GET", "HEAD"])
async def firmware_for_charger(ctx: Ctx, request: Request, token: Token, name: str) -> FileResponse:
    """A firmware file, for the charger whose UpdateFirmware carried this link (Range requests resume)."""
    link = await ctx.store.files.link(token)
    path = ctx.store.files.firmware_path(name) if link is not None and link.action in FIRMWARE_ACTIONS \
        and link.file_name == name else None  # fmt: skip
    if path is None:
        raise HTTPException(404, "no such file, or the link expired")
    if request.method == "GET":
        log.info("firmware download charger=%s file=%s range=%s remote=%s", link.charger_id, name,
                 request.headers.get("range"), _remote(request))  # fmt: skip
    return FileResponse(path, filename=name, media_type="application/octet-stream")


@public.api_route("/files/uploads/{token}", methods=["PUT", "POST"])
@public.api_route("/files/uploads/{token}/{name:path}", methods=["PUT", "POST"])
async def upload_from_charger(ctx: Ctx, request: Request, token: Token, name: str = "") -> JSONResponse:
    """A diagnostics or log file, from the charger whose GetDiagnostics or GetLog carried this link: a raw body
    (PUT), or the first file of a multipart/form-data body."""
    files = ctx.store.files
    link = await files.link(token)
    if link is None or not link.upload:
        raise HTTPException(404, "no such upload link, or it expired")
    if link.used:
        raise HTTPException(409, "this link already took its file")
    boundary = _boundary(request)
    try:
        if name:
            check_file_name(name)
        declared = request.headers.get("content-length", "")
        if link.max_bytes is not None and declared.isdigit() and \
                int(declared) > link.max_bytes + (MULTIPART_SLACK if boundary else 0):  # fmt: skip
            raise TooLarge(link.max_bytes)
        incoming = Incoming(files.upload_dir(link.charger_id), link.max_bytes)
        try:
            if boundary is not None:
                name = await _receive_form(request.stream(), boundary, incoming) or name
            else:
                await _receive(request.stream(), incoming)
            file_name = name or link.file_name or f"{link.action}-{link.request_id or 'upload'}.bin"
            path = await incoming.keep(f"{utcnow():%Y%m%dT%H%M%SZ}-{disk_name(file_name)}")
        except BaseException:
            incoming.discard()
            raise
    except TooLarge as e:
        log.warning("upload refused, over %d bytes charger=%s action=%s", e.limit, link.charger_id, link.action)
        raise HTTPException(413, f"the file is larger than {e.limit} bytes (files.max_upload_mb)") from None
    except ValueError as e:
        log.warning("upload refused charger=%s action=%s: %s", link.charger_id, link.action, e)
        raise HTTPException(400, str(e)) from None
    except ClientDisconnect:
        log.warning("upload cut off charger=%s action=%s", link.charger_id, link.action)
        raise HTTPException(400, "the upload was cut off") from None
    upload_id = await files.received(link, file_name, path, incoming.size, incoming.sha256, _remote(request))
    if upload_id is None:  # another upload on the same link was quicker
        path.unlink(missing_ok=True)
        raise HTTPException(409, "this link already took its file")
    log.info("upload received charger=%s action=%s request_id=%s file=%r size=%d", link.charger_id, link.action,
             link.request_id, file_name, incoming.size)  # fmt: skip
    return JSONResponse({"id": upload_id, "size": incoming.size, "sha256": incoming.sha256}, status_code=201)


def _remote(request: Request) -> str | None:
    return request.client.host if request.client else None


def _boundary(request: Request) -> bytes | None:
    """The boundary of a multipart/form-data body; None for a raw one."""
    header = Message()
    header["content-type"] = request.headers.get("content-type", "application/octet-stream")
    if header.get_content_type() != "multipart/form-data":
        return None
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 70:
        raise HTTPException(400, "multipart/form-data without a usable boundary")
    return boundary.encode("latin-1", errors="replace")


async def _receive(chunks: AsyncIterator[bytes], incoming: Incoming) -> None:
    async for chunk in chunks:
        incoming.write(chunk)


async def _receive_form(chunks: AsyncIterator[bytes], boundary: bytes, incoming: Incoming) -> str | None:
    """The first file of a multipart/form-data body into `incoming`; its file name as sent."""
    form = FormFile(boundary, incoming)
    async for chunk in chunks:
        form.feed(chunk)
        if form.complete:
            break  # what follows the file (more fields, the closing boundary) is not needed
    if not form.complete:
        raise ValueError("no complete file in the multipart/form-data body")
    return form.file_name


class FormFile:
    """A multipart/form-data body read as it streams: the first part that is a file is written to the sink, the
    other fields are skipped (a bounded amount of them). ValueError for what is not such a body."""

    def __init__(self, boundary: bytes, sink: Incoming) -> None:
        self._delimiter = b"\r\n--" + boundary
        self._buffer = b"\r\n"  # the first delimiter has no line break of its own before it
        self._state = "preamble"  # -> delimiter -> headers -> body -> delimiter ... -> end
        self._sink = sink
        self._in_file = self._taken = False
        self._skipped = 0
        self.file_name: str | None = None
        self.complete = False

    def feed(self, data: bytes) -> None:
        buffer = self._buffer + data
        while not self.complete:
            if self._state in ("preamble", "body"):
                at = buffer.find(self._delimiter)
                if at < 0:  # all but what could be the start of a delimiter is content
                    cut = max(0, len(buffer) - len(self._delimiter) + 1)
                    self._content(buffer[:cut])
                    buffer = buffer[cut:]
                    break
                self._content(buffer[:at])
                buffer = buffer[at + len(self._delimiter) :]
                self.complete = self._in_file
                self._state = "delimiter"
            elif self._state == "delimiter":
                eol = buffer.find(b"\r\n")
                if buffer.startswith(b"--") or eol < 0:
                    if buffer.startswith(b"--"):
                        self._state = "end"
                    elif len(buffer) > 1024:
                        raise ValueError("a multipart boundary line that does not end")
                    break
                buffer = buffer[eol + 2 :]
                self._state = "headers"
            elif self._state == "headers":
                at = -2 if buffer.startswith(b"\r\n") else buffer.find(b"\r\n\r\n")  # -2: no headers at all
                if at == -1:
                    if len(buffer) > MAX_PART_HEADERS:
                        raise ValueError("a multipart part with too long a header block")
                    break
                self._part(buffer[: max(at, 0)])
                buffer = buffer[at + 4 :]
                self._state = "body"
            else:  # end: what follows the closing boundary is nothing to us
                buffer = b""
                break
        self._buffer = buffer

    def _part(self, block: bytes) -> None:
        header = Message()
        for line in block.decode("utf-8", errors="replace").split("\r\n"):
            key, sep, value = line.partition(":")
            if sep:
                header[key.strip()] = value.strip()
        filename = header.get_param("filename", header="content-disposition")
        if isinstance(filename, tuple):  # RFC 2231: filename*=UTF-8''...
            filename = collapse_rfc2231_value(filename)
        self._in_file = filename is not None and not self._taken
        if self._in_file:
            self._taken = True
            self.file_name = check_file_name(str(filename)) if filename else None

    def _content(self, data: bytes) -> None:
        if self._state != "body" or not data:
            return
        if self._in_file:
            self._sink.write(data)
            return
        self._skipped += len(data)
        if self._skipped > MAX_SKIPPED:
            raise ValueError("form fields besides the file are too large")


# -- the API -----------------------------------------------------------------------------------------------


@router.get("/uploads", summary="Diagnostics and log files received from chargers, newest first")
async def uploads(ctx: Ctx, _: Reader, charger: str | None = None, limit: Limit = 1000) -> list[dict[str, Any]]:
    return await ctx.store.files.uploads(charger, limit)


@router.get("/uploads/{upload_id}", summary="One received file, as the charger sent it (operators)",
            response_class=FileResponse)  # fmt: skip
async def upload_file(ctx: Ctx, _: Operator, upload_id: int) -> FileResponse:
    found = await ctx.store.files.upload(upload_id)
    if found is None or not found[1].is_file():
        raise HTTPException(404, f"no upload {upload_id}")
    info, path = found
    return FileResponse(path, filename=info["file_name"], media_type="application/octet-stream",
                        headers={"X-Sha256": info["sha256"]})  # fmt: skip


@router.get("/chargers/{charger_id}/file-status", summary="What a charger reported while updating firmware or "
            "uploading diagnostics and logs, newest first")  # fmt: skip
async def file_status(ctx: Ctx, _: Reader, charger_id: ChargerId, limit: Limit = 1000) -> list[dict[str, Any]]:
    known_charger(ctx, charger_id)
    return await ctx.store.files.statuses(charger_id, limit)


@router.get("/firmware", summary="Firmware files chargers can be updated with (give the name as the location of "
            "UpdateFirmware)")  # fmt: skip
async def firmware(ctx: Ctx, _: Reader) -> list[dict[str, Any]]:
    return await ctx.store.files.firmware()


@router.put("/firmware/{name}", summary="Add or replace a firmware file: the body is the file (admins)")
async def put_firmware(ctx: Ctx, request: Request, actor: Admin, name: FirmwareName) -> dict[str, Any]:
    files = ctx.store.files
    _firmware_name(name)
    audit_id = await ctx.store.audit.begin(actor, "PutFirmware", None, {"name": name})
    incoming = Incoming(files.firmware_dir)
    try:
        await _receive(request.stream(), incoming)
        if incoming.size == 0:
            raise HTTPException(422, "the body is empty: it must be the firmware file")
        info = await files.add_firmware(incoming, name)
    except BaseException as e:
        incoming.discard()
        await ctx.store.audit.finish(audit_id, "failed", {"error": str(e) or type(e).__name__})
        raise
    await ctx.store.audit.finish(audit_id, "ok", info)
    log.info("firmware added file=%s size=%d by=%s", name, info["size"], actor)
    return info


@router.delete("/firmware/{name}", summary="Remove a firmware file (admins)", status_code=204)
async def delete_firmware(ctx: Ctx, actor: Admin, name: FirmwareName) -> Response:
    _firmware_name(name)
    audit_id = await ctx.store.audit.begin(actor, "DeleteFirmware", None, {"name": name})
    removed = await ctx.store.files.remove_firmware(name)
    await ctx.store.audit.finish(audit_id, "ok" if removed else "not_found")
    if not removed:
        raise HTTPException(404, f"no firmware file {name!r}")
    log.info("firmware removed file=%s by=%s", name, actor)
    return Response(status_code=204)


def _firmware_name(name: str) -> None:
    try:
        check_firmware_name(name)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None


@router.get("/site-ca.pem", summary="The site CA's certificate (PEM): chargers on security profile 2 or 3 trust it "
            "(give it to them with InstallCertificate), and their client certificates are issued by it",
            response_class=Response)  # fmt: skip
async def site_ca(ctx: Ctx, _: Reader) -> Response:
    path = ctx.store.files.state_dir / "pki" / "ca.pem"
    if not path.is_file():
        raise HTTPException(404, "no site CA yet: the TLS listener (ocpp.tls_listen) makes it at its first start")
    return Response(path.read_bytes(), media_type="application/x-pem-file")
