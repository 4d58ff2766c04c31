"""The SQLite database: opening, pragmas, migrations, and the group-commit writer.

Every write is a synchronous function ``fn(conn) -> T`` handed to ``Database.write``. One writer
task per ``Database`` takes every queued function, runs the whole batch on one dedicated thread
inside a single ``BEGIN IMMEDIATE`` transaction, each function inside its own ``SAVEPOINT`` (an
exception rolls back that function only and is re-raised to its caller), commits once, and only
then resolves each caller's future. With ``synchronous=FULL`` a resolved write has been fsynced:
it survives power loss. Concurrent callers thus share one fsync (group commit), while each
operation stays atomic and sees the effects of the ones before it. Several OS processes on one file
serialize through SQLite's write lock and its busy timeout.

Reads (``Database.read``) run on a second connection and thread, in a deferred transaction, so
they see one consistent committed snapshot and never write.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from storage.errors import DatabaseClosed, LedgerError, StorageFailure
from storage.migrations import migrate

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
MAX_BATCH = 512

_Item = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _switch_to_wal(conn: sqlite3.Connection) -> str:
    """``PRAGMA journal_mode = WAL``, retried: SQLite answers a concurrent switch (several
    processes opening a new file at once) with an immediate "locked", bypassing the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _open_sync(path: str) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    writer = _connect(path)
    try:
        mode = _switch_to_wal(writer)
        if mode.lower() != "wal":
            raise StorageFailure(f"cannot switch the database to WAL mode (got {mode})")
        migrate(writer)
        reader = _connect(path)
    except BaseException:
        writer.close()
        raise
    return writer, reader


class Database:
    """An open ledger database. Create with ``await Database.open(path)``; ``await db.close()``."""

    def __init__(
        self,
        path: Path,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        write_thread: ThreadPoolExecutor,
        read_thread: ThreadPoolExecutor,
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_thread = write_thread
        self._read_thread = read_thread
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0
        self.batched_ops = 0

    @classmethod
    async def open(cls, path: str | Path) -> Database:
        """Open (creating if needed) the file, switch to WAL, apply migrations."""
        p = Path(path)
        write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-write")
        read_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-read")
        loop = asyncio.get_running_loop()
        try:
            writer, reader = await loop.run_in_executor(write_thread, _open_sync, str(p))
        except sqlite3.Error as exc:
            write_thread.shutdown()
            read_thread.shutdown()
            raise StorageFailure(f"cannot open database {p}: {exc}") from exc
        except BaseException:
            write_thread.shutdown()
            read_thread.shutdown()
            raise
        return cls(p, writer, reader, write_thread, read_thread)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` atomically in a write transaction; return once it is durably committed.

        A caller cancelled while waiting does not cancel the write (it may still commit): retry
        with the same idempotency key to learn its result.
        """
        if self._closed:
            raise DatabaseClosed("the database is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put_nowait((fn, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._writer_loop(), name="ledger-writer")
        return await asyncio.shield(fut)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on a read-only snapshot of the committed state."""
        if self._closed:
            raise DatabaseClosed("the database is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_thread, self._run_read, fn)

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader
        try:
            conn.execute("BEGIN DEFERRED")
            try:
                return fn(conn)
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StorageFailure(f"database read failed: {exc}") from exc

    async def _writer_loop(self) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            fns = [fn for fn, _ in batch]
            try:
                results = await loop.run_in_executor(self._write_thread, self._run_batch, fns)
            except BaseException as exc:  # the thread itself failed: every caller learns it
                err = (
                    exc if isinstance(exc, LedgerError) else StorageFailure(f"write failed: {exc}")
                )
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                if not isinstance(exc, Exception):
                    raise
                continue
            self.batches += 1
            self.batched_ops += len(batch)
            for (_, fut), (ok, value) in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    def _run_batch(self, fns: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageFailure(f"cannot start a write transaction: {exc}") from exc
        results: list[tuple[bool, Any]] = []
        try:
            for fn in fns:
                conn.execute("SAVEPOINT op")
                try:
                    value = fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    if isinstance(exc, sqlite3.Error):
                        exc = StorageFailure(f"database write failed: {exc}")
                    results.append((False, exc))
                else:
                    conn.execute("RELEASE op")
                    results.append((True, value))
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StorageFailure(f"commit failed: {exc}") from exc
            raise
        return results

    async def checkpoint(self) -> None:
        """Copy the WAL into the main file and truncate it (for backups and tests)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._write_thread, run, self._writer)

    async def close(self) -> None:
        """Finish queued writes, then close both connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await self._task
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._write_thread, self._writer.close)
        await loop.run_in_executor(self._read_thread, self._reader.close)
        self._write_thread.shutdown()
        self._read_thread.shutdown()
