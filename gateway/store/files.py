"""Files exchanged with chargers: firmware served from {state_dir}/firmware, diagnostics and logs received into
{state_dir}/uploads/{charger}/, the links handed out for both, and what chargers report on the way.

A file only ever appears under its real name complete and on disk: it arrives in a hidden temporary file beside
its place, is fsynced, then renamed (and its directory fsynced). An upload is listed once its row is committed,
after the rename: a kill in between leaves an unlisted file, never a listed half one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.clock import iso, parse_iso, utcnow
from gateway.store.db import Database
from gateway.store.events import Events

FIRMWARE_ACTIONS = frozenset({"UpdateFirmware", "SignedUpdateFirmware"})
UPLOAD_ACTIONS = frozenset({"GetDiagnostics", "GetLog"})
# Firmware names end up in URLs and in requests typed by hand: keep them plain.
FIRMWARE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
_PART_PREFIX, _PART_SUFFIX, _PART_MAX_AGE_S = ".incoming-", ".part", 86400
CHUNK = 1 << 16


class TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


def check_file_name(name: str) -> str:
    """A file name as a charger sent it: one path segment, no hidden or special file (no path traversal)."""
    if not name or len(name) > 255 or name.startswith(".") or "/" in name or "\\" in name or not name.isprintable():
        raise ValueError(f"{name[:80]!r} is not a plain file name")
    return name


def check_firmware_name(name: str) -> str:
    if not FIRMWARE_NAME.fullmatch(name):
        raise ValueError(f"{name[:80]!r}: a firmware file name is letters, digits, '.', '_', '+' and '-' (up to 128), "
                         "starting with a letter or digit")  # fmt: skip
    return name


def disk_name(text: str) -> str:
    """What a name from the network becomes on disk: safe characters only, never hidden."""
    safe = _UNSAFE.sub("_", text)[:200]
    return safe if safe and not safe.startswith(".") else "_" + safe


@dataclass(frozen=True, slots=True)
class FileLink:
    token: str
    charger_id: str
    action: str
    request_id: int | None
    file_name: str | None  # firmware: the file served; upload: the name the charger said it would send
    max_bytes: int | None
    expires_at: datetime
    used: bool

    @property
    def upload(self) -> bool:
        return self.action in UPLOAD_ACTIONS


class Incoming:
    """A file arriving in pieces, hashed on the way, in a hidden temporary file beside its place."""

    def __init__(self, directory: Path, limit: int | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        _sweep(directory)
        fd, name = tempfile.mkstemp(dir=directory, prefix=_PART_PREFIX, suffix=_PART_SUFFIX)
        self._file = os.fdopen(fd, "wb")
        self._temp = Path(name)
        self.directory = directory
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise TooLarge(self.limit)
        self._hash.update(data)
        self._file.write(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    async def keep(self, name: str, replace: bool = False) -> Path:
        """Put the complete file in place as `name`: replacing what is there, or (replace=False) under the first
        free name of name, name-1, name-2, ..."""
        return await asyncio.to_thread(self._keep, name, replace)

    def _keep(self, name: str, replace: bool) -> Path:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        target = self.directory / name
        if replace:
            os.replace(self._temp, target)
        else:
            stem, dot, suffix = name.partition(".")
            for n in range(1, 10000):
                try:
                    os.link(self._temp, target)  # never overwrites: fails when the name is taken
                    break
                except FileExistsError:
                    target = self.directory / f"{stem}-{n}{dot}{suffix}"
            os.unlink(self._temp)
        _fsync_dir(self.directory)
        return target

    def discard(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()


class Files:
    def __init__(self, db: Database, events: Events, state_dir: Path) -> None:
        self.db = db
        self.site_events = events
        self.state_dir = state_dir
        self.firmware_dir = state_dir / "firmware"
        self.uploads_dir = state_dir / "uploads"
        self._hashes: dict[tuple[str, int, int], str] = {}  # (name, size, mtime_ns) -> sha256 of a firmware file

    # -- links ---------------------------------------------------------------------------------------------

    async def new_link(self, charger_id: str, action: str, expires_at: datetime, *, request_id: int | None = None,
                       file_name: str | None = None, max_bytes: int | None = None) -> str:  # fmt: skip
        """A link for one charger and one request; returns its token. Expired links go on the way."""
        token = secrets.token_urlsafe(24)
        now = utcnow()

        async def op(conn: aiosqlite.Connection) -> None:
            await conn.execute("DELETE FROM file_links WHERE expires_at < ?", (iso(now),))
            await conn.execute(
                "INSERT INTO file_links (token, charger_id, action, request_id, file_name, max_bytes, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token, charger_id, action, request_id, file_name, max_bytes, iso(now), iso(expires_at)),
            )

        await self.db.write(op)
        return token

    async def link(self, token: str) -> FileLink | None:
        """A link that has not expired."""
        row = await self.db.fetchone(
            "SELECT token, charger_id, action, request_id, file_name, max_bytes, expires_at, used_at FROM file_links "
            "WHERE token = ?", (token,)
        )  # fmt: skip
        if row is None or parse_iso(row["expires_at"]) <= utcnow():
            return None
        return FileLink(row["token"], row["charger_id"], row["action"], row["request_id"], row["file_name"],
                        row["max_bytes"], parse_iso(row["expires_at"]), row["used_at"] is not None)  # fmt: skip

    async def settle_link(self, token: str, charger_id: str, accepted: bool, file_name: str | None = None) -> None:
        """The charger answered the request that carries the link: a refusal ends it; an upload learns the name of
        the file to come."""
        if not accepted:
            await self.db.execute("DELETE FROM file_links WHERE token = ? AND charger_id = ?", (token, charger_id))
        elif file_name is not None:
            await self.db.execute("UPDATE file_links SET file_name = ? WHERE token = ? AND charger_id = ?",
                                  (file_name, token, charger_id))  # fmt: skip

    # -- uploads -------------------------------------------------------------------------------------------

    def upload_dir(self, charger_id: str) -> Path:
        return self.uploads_dir / disk_name(charger_id)

    async def received(self, link: FileLink, file_name: str, path: Path, size: int, sha256: str,
                       remote: str | None) -> int | None:  # fmt: skip
        """An upload in place on disk: listed, and its link used up. None when the link was used meanwhile."""
        now = utcnow()

        async def op(conn: aiosqlite.Connection) -> int | None:
            cursor = await conn.execute("UPDATE file_links SET used_at = ? WHERE token = ? AND used_at IS NULL",
                                        (iso(now), link.token))  # fmt: skip
            if cursor.rowcount == 0:
                return None
            cursor = await conn.execute(
                "INSERT INTO uploads (charger_id, action, request_id, file_name, path, size, sha256, received_at, "
                "remote) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (link.charger_id, link.action, link.request_id, file_name, str(path.relative_to(self.uploads_dir)),
                 size, sha256, iso(now), remote),
            )  # fmt: skip
            await self.site_events.within(conn, "upload_received", {
                "charger": link.charger_id, "action": link.action, "request_id": link.request_id,
                "file_name": file_name, "size": size, "sha256": sha256}, now)  # fmt: skip
            return cursor.lastrowid

        return await self.db.write(op)

    async def uploads(self, charger_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Files received, newest first."""
        sql = "SELECT id, charger_id AS charger, action, request_id, file_name, size, sha256, received_at FROM uploads"
        where, params = (" WHERE charger_id = ?", (charger_id,)) if charger_id else ("", ())
        rows = await self.db.fetchall(sql + where + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [dict(r) for r in rows]

    async def upload(self, upload_id: int) -> tuple[dict[str, Any], Path] | None:
        """One upload and where its file is."""
        row = await self.db.fetchone(
            "SELECT id, charger_id AS charger, action, request_id, file_name, size, sha256, received_at, path "
            "FROM uploads WHERE id = ?", (upload_id,)
        )  # fmt: skip
        if row is None:
            return None
        info = dict(row)
        return info, self.uploads_dir / info.pop("path")

    # -- firmware ------------------------------------------------------------------------------------------

    def firmware_path(self, name: str) -> Path | None:
        """The firmware file of that name, if there is one."""
        if not FIRMWARE_NAME.fullmatch(name):
            return None
        path = self.firmware_dir / name
        return path if path.is_file() else None

    async def firmware(self) -> list[dict[str, Any]]:
        """Every firmware file with its size and sha256 (hashed once per version of a file)."""
        return await asyncio.to_thread(self._firmware)

    def _firmware(self) -> list[dict[str, Any]]:
        found = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self.firmware_dir) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                stat = entry.stat()
                key = (entry.name, stat.st_size, stat.st_mtime_ns)
                if key not in self._hashes:
                    self._hashes[key] = _hash_file(Path(entry.path))
                found.append({"name": entry.name, "size": stat.st_size, "sha256": self._hashes[key],
                              "modified_at": iso(datetime.fromtimestamp(stat.st_mtime, UTC))})  # fmt: skip
        return sorted(found, key=lambda f: f["name"])

    async def add_firmware(self, incoming: Incoming, name: str) -> dict[str, Any]:
        path = await incoming.keep(name, replace=True)
        stat = path.stat()
        self._hashes[(name, stat.st_size, stat.st_mtime_ns)] = incoming.sha256
        return {"name": name, "size": stat.st_size, "sha256": incoming.sha256}

    async def remove_firmware(self, name: str) -> bool:
        path = self.firmware_path(name)
        if path is None:
            return False
        await asyncio.to_thread(_unlink_durably, path)
        return True

    # -- what chargers report ------------------------------------------------------------------------------

    async def status(self, charger_id: str, kind: str, action: str, status: str, request_id: int | None,
                     at: datetime | None = None) -> None:  # fmt: skip
        """A status report (firmware_status, diagnostics_status, log_status, publish_firmware_status), kept in
        order and told north as a site event of that kind."""
        at = at or utcnow()

        async def op(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO file_status (charger_id, ts, kind, action, status, request_id) VALUES (?, ?, ?, ?, ?, ?)",
                (charger_id, iso(at), kind, action, status, request_id),
            )
            await self.site_events.within(conn, kind, {"charger": charger_id, "status": status,
                                                       "request_id": request_id}, at)  # fmt: skip

        await self.db.write(op)

    async def statuses(self, charger_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """A charger's firmware, diagnostics and log reports, newest first."""
        rows = await self.db.fetchall(
            "SELECT ts, kind, action, status, request_id FROM file_status WHERE charger_id = ? ORDER BY id DESC "
            "LIMIT ?", (charger_id, limit)
        )  # fmt: skip
        return [dict(r) for r in rows]


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK * 16):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_durably(path: Path) -> None:
    path.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _sweep(directory: Path) -> None:
    """Temporary files a kill left behind (a day old: an upload still running is younger)."""
    cutoff = time.time() - _PART_MAX_AGE_S
    for part in directory.glob(f"{_PART_PREFIX}*{_PART_SUFFIX}"):
        with contextlib.suppress(OSError):
            if part.stat().st_mtime < cutoff:
                part.unlink()
