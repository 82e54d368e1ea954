"""The SQLite database: one writer task with group commit, one reader, schema migrations.

Durability: WAL with ``synchronous=FULL``, so a commit is on disk before :meth:`Database.write` returns and
before anything is acknowledged to a charger; a power cut loses nothing acknowledged. Writes that arrive
together share one transaction (one fsync), which is what keeps this cheap on an SD card.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteOp = Callable[[aiosqlite.Connection], Awaitable[T]]
MAX_BATCH = 256


class Database:
    def __init__(self, path: Path, busy_timeout_ms: int = 10000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[tuple[WriteOp[Any], asyncio.Future[Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0  # transactions the writer committed (one per batch)
        self.failed_batches = 0  # batches that could not be committed at all (locked, disk full, I/O error)
        self.last_error: str | None = None  # why the last batch failed; None once one commits again
        # Called with True after each commit, False after each rollback: what an op prepared to tell others
        # (an event for its listeners) is told only once it is on disk.
        self.settled_hooks: list[Callable[[bool], None]] = []

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, around whole batches.
        self._writer = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", f"busy_timeout={self.busy_timeout_ms}"):
            await self._writer.execute(f"PRAGMA {pragma}")
        await migrate(self._writer)
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        self._reader.row_factory = aiosqlite.Row
        await self._reader.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
        await self._reader.execute("PRAGMA query_only=1")
        self._task = asyncio.create_task(self._write_loop(), name="store-writer")

    @property
    def is_open(self) -> bool:
        return self._task is not None and not self._task.done()

    async def close(self) -> None:
        if self._task is not None:
            await self._queue.join()  # everything queued is committed before we go
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def write(self, op: WriteOp[T]) -> T:
        """Run op inside a write transaction; returns once it is committed to disk."""
        if not self.is_open:
            raise RuntimeError("the store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return await future

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement, committed; returns the last row id."""

        async def op(conn: aiosqlite.Connection) -> int:
            cursor = await conn.execute(sql, tuple(params))
            return cursor.lastrowid or 0

        return await self.write(op)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        assert self._reader is not None, "the store is not open"
        return list(await self._reader.execute_fetchall(sql, tuple(params)))

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def _write_loop(self) -> None:
        conn = self._writer
        assert conn is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit_batch(conn, batch)
            except Exception as error:  # the transaction itself failed: every write of the batch fails, the loop goes on
                self.failed_batches += 1
                self.last_error = f"{type(error).__name__}: {error}"
                log.error("store: %d writes not committed: %s", len(batch), self.last_error)
                for _, future in batch:
                    _settle(future, error=error)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit_batch(self, conn: aiosqlite.Connection, batch: list) -> None:
        """Commit the batch as one transaction. Only when one of its writes raised is it split, so the others
        still land; a failing BEGIN or COMMIT (database locked, disk full) fails the batch once, not per write."""
        await conn.execute("BEGIN IMMEDIATE")
        results = []
        for op, future in batch:
            try:
                results.append(await op(conn))
            except Exception as error:
                await _rollback(conn)
                self._settled(False)
                if len(batch) == 1:
                    log.error("store write failed: %s", error)
                    _settle(future, error=error)
                    return
                for item in batch:
                    await self._commit_batch(conn, [item])
                return
        try:
            await conn.execute("COMMIT")
        except Exception:
            await _rollback(conn)
            self._settled(False)
            raise
        self.commits += 1
        self._settled(True)
        self.last_error = None
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result)

    def _settled(self, committed: bool) -> None:
        for hook in self.settled_hooks:
            hook(committed)


async def _rollback(conn: aiosqlite.Connection) -> None:
    try:
        await conn.execute("ROLLBACK")
    except sqlite3.OperationalError:
        pass  # no transaction was open


def _settle(future: asyncio.Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the waiter went away (its charger disconnected); the write still happened
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def read_rows(path: Path, sql: str, params: Iterable[Any] = (), batch: int = 500) -> Iterator[tuple[Any, ...]]:
    """The rows of a query, from a read-only connection of their own, fetched a batch at a time: for a worker
    thread (an export of 100k sessions) that must neither hold the event loop's reader nor load them all."""
    # Not bound to one thread: a streamed response may fetch each batch from another worker of the pool.
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10, check_same_thread=False)
    try:
        cursor = conn.execute(sql, tuple(params))
        while rows := cursor.fetchmany(batch):
            yield from rows
    finally:
        conn.close()


def where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause of the conditions whose value is given (not None), and its parameters."""
    given = [(clause, value) for clause, value in conditions if value is not None]
    if not given:
        return "", []
    return "WHERE " + " AND ".join(c for c, _ in given), [v for _, v in given]


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("gateway.store").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            number, _, name = entry.name.partition("_")
            found.append((int(number), name.removesuffix(".sql"), entry.read_text("utf-8")))
    return sorted(found)


async def migrate(conn: aiosqlite.Connection) -> int:
    """Bring the schema to the newest version; each migration commits whole or not at all."""
    (current,) = await (await conn.execute("PRAGMA user_version")).fetchone()
    for version, name, sql in migrations():
        if version <= current:
            continue
        log.info("store migration version=%d name=%s", version, name)
        try:
            await conn.execute("BEGIN IMMEDIATE")
            for statement in _statements(sql):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version={version}")
            await conn.execute("COMMIT")
        except Exception:
            await _rollback(conn)
            raise
        current = version
    return current


def _statements(sql: str) -> list[str]:
    # executescript() would commit on its own; split instead, where SQLite says a statement is complete (a
    # trigger's body holds ';' of its own).
    statements, current = [], ""
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        current += line + "\n"
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
