"""The ledger database: opening, migrations, and the group-commit writer, on either engine.

``Database.open(location)`` opens a SQLite file (``location`` a path: ``storage.sqlite``) or a
PostgreSQL database (``location`` a ``postgresql://`` URL, the password given apart:
``storage.postgres``). The operations are the same functions on both (``storage.sql``).

Every write is a synchronous function ``fn(conn) -> T`` handed to ``Database.write``. One writer
task per ``Database`` takes every queued function, runs the whole batch on one dedicated thread
inside a single write transaction (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction holding
the database's write lock), commits once, and only then resolves each caller's future. A
resolved write is durable (SQLite ``synchronous=FULL``; PostgreSQL ``synchronous_commit=on``).
Concurrent callers thus share one commit (group commit), while each operation stays atomic and
sees the effects of the ones before it. Several OS processes on one database serialize their
write transactions (SQLite's write lock; PostgreSQL's write-lock table and advisory lock).

A batch first runs all together: its functions one after the other with no savepoint between
them, and an engine that sends statements without waiting for each result (PostgreSQL's
pipeline mode) waits only once, after the last. If anything fails — a function raises, or the
database refuses a statement (on PostgreSQL that may come to light only in a later function's
read) — the whole transaction is rolled back and the batch runs again, one operation at a time:
each function inside its own ``SAVEPOINT``, waited for at its end (``end_operation``), so an
exception rolls back that function only and is re-raised to its caller. Only then is it
committed. So a function may run twice before its transaction commits, and every caller's
result comes from the run that committed, which is exactly the run of the same operations one
after the other: **a write function must have no effect outside ``conn``** (no counter, no
list it appends to, no call out; its arguments are read, never consumed) and compute its
result from what it reads and its arguments alone. A batch with a failing operation costs one
more pass; a batch without one pays no savepoint and no wait per operation.

Reads (``Database.read``) run on a second connection, in a read-only transaction, so they see one
consistent committed snapshot and never write. On SQLite they run at once on the caller's thread
(the event loop): a snapshot read of a local WAL file never waits for the writer, and a read of a
few indexed rows costs less than the hop to a thread and back would. On PostgreSQL a read is a
round trip to the server: it runs on a thread of its own, as the writes do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from storage.errors import DatabaseClosed, LedgerError, StorageFailure
from storage.location import is_postgres_url
from storage.prefetch import Prefetched, following
from storage.sql import Connection

if TYPE_CHECKING:
    from storage.postgres import PgListener

T = TypeVar("T")

MAX_BATCH = 512

_Item = tuple[Callable[[Connection], Any], "asyncio.Future[Any]"]


class _Session(Connection, Protocol):
    def close(self) -> None: ...


class _Engine(Protocol):
    """What ``Database`` needs of an engine (``SqliteEngine``, ``PostgresEngine``)."""

    name: str
    error: type[Exception]
    prefetch: bool  # a batch asks its operations' reads ahead (``storage.prefetch``)

    def open(self) -> tuple[Any, Any]: ...
    def begin_write(self, conn: Any) -> None: ...
    def end_operation(self, conn: Any) -> None: ...
    def commit(self, conn: Any) -> None: ...
    def rollback(self, conn: Any) -> None: ...
    def begin_read(self, conn: Any) -> None: ...
    def schema_version(self, conn: Any) -> int: ...
    def checkpoint(self, conn: Any) -> None: ...


def _engine(location: str | Path, password: str | None) -> _Engine:
    text = str(location)
    if is_postgres_url(text):
        from storage.postgres import PostgresEngine  # the driver loads only when used

        return PostgresEngine(text, password)
    from storage.sqlite import SqliteEngine

    return SqliteEngine(text)


class Database:
    """An open ledger database. Create with ``await Database.open(location)``;
    ``await db.close()``. ``location`` is a SQLite file's path or a ``postgresql://`` URL;
    ``engine`` is ``"sqlite"`` or ``"postgresql"``."""

    def __init__(
        self,
        location: str,
        engine: _Engine,
        writer: _Session,
        reader: _Session,
        write_thread: ThreadPoolExecutor,
        read_thread: ThreadPoolExecutor,
    ) -> None:
        self.location = location
        self.engine = engine.name
        self._engine = engine
        self._writer = writer
        self._reader = reader
        self._write_thread = write_thread
        self._read_thread = read_thread
        self._read_inline = engine.name == "sqlite"
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._listeners: dict[str, PgListener] = {}
        self.batches = 0
        self.batched_ops = 0
        self.replays = 0  # batches run again one operation at a time (one of them failed)

    @classmethod
    async def open(cls, location: str | Path, *, password: str | None = None) -> Database:
        """Open the database and apply migrations: a SQLite file (created if needed, switched to
        WAL) or, for a ``postgresql://`` URL, an existing PostgreSQL database (``password``, if
        any, given apart: a URL holding one is refused with ``InvalidInput``)."""
        engine = _engine(location, password)
        where = str(location) if engine.name == "sqlite" else _shown(str(location))
        write_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-write")
        read_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-read")
        loop = asyncio.get_running_loop()
        try:
            writer, reader = await loop.run_in_executor(write_thread, engine.open)
        except engine.error as exc:
            write_thread.shutdown()
            read_thread.shutdown()
            raise StorageFailure(f"cannot open database {where}: {_reason(exc)}") from exc
        except BaseException:
            write_thread.shutdown()
            read_thread.shutdown()
            raise
        return cls(str(location), engine, writer, reader, write_thread, read_thread)

    async def write(self, fn: Callable[[Connection], T]) -> T:
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

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` on a read-only snapshot of the committed state (SQLite: at once, on this
        thread; PostgreSQL: on the read thread)."""
        if self._closed:
            raise DatabaseClosed("the database is closed")
        if self._read_inline:
            return self._run_read(fn)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_thread, self._run_read, fn)

    def _run_read(self, fn: Callable[[Connection], T]) -> T:
        conn = self._reader
        try:
            self._engine.begin_read(conn)
            try:
                return fn(conn)
            finally:
                conn.execute("ROLLBACK")
        except self._engine.error as exc:
            raise StorageFailure(f"database read failed: {_reason(exc)}") from exc

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

    def _run_batch(self, fns: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        """Run the batch in one transaction and commit it: first all together, without a
        savepoint (``_run_together``); if any of them failed, the transaction is rolled back
        and the batch runs again one operation at a time (``_run_each``). Every result handed
        back comes from the transaction that committed."""
        conn, engine = self._writer, self._engine
        self._begin(conn)
        try:
            results = self._run_together(conn, fns)
            if results is None:
                engine.rollback(conn)
                self.replays += 1
                self._begin(conn)
                results = self._run_each(conn, fns)
            engine.commit(conn)
        except BaseException as exc:
            with contextlib.suppress(engine.error):
                engine.rollback(conn)
            if isinstance(exc, engine.error):
                raise StorageFailure(f"commit failed: {_reason(exc)}") from exc
            raise
        return results

    def _begin(self, conn: _Session) -> None:
        engine = self._engine
        try:
            engine.begin_write(conn)
        except engine.error as exc:
            with contextlib.suppress(engine.error):
                engine.rollback(conn)
            raise StorageFailure(f"cannot start a write transaction: {_reason(exc)}") from exc

    def _run_together(
        self, conn: _Session, fns: list[Callable[[Connection], Any]]
    ) -> list[tuple[bool, Any]] | None:
        """Every operation one after the other, with no savepoint and no wait between them
        (PostgreSQL: the statements of one flow into the next's first read); then wait for
        all of them. ``None`` as soon as anything failed: an operation raised, or a statement
        of any of them was refused (it may come to light in a later operation) — the
        transaction is then left for the caller to roll back, whole."""
        values: list[Any] = []
        try:
            if self._engine.prefetch:
                with following():
                    _run_prefetched(conn, fns, values)
            else:
                for fn in fns:
                    values.append(fn(conn))
            self._engine.end_operation(conn)
        except Exception:
            return None
        return [(True, value) for value in values]

    def _run_each(
        self, conn: _Session, fns: list[Callable[[Connection], Any]]
    ) -> list[tuple[bool, Any]]:
        """Every operation in its own savepoint, waited for at its end: one that fails rolls
        back alone, and its caller learns its own error."""
        engine = self._engine
        results: list[tuple[bool, Any]] = []
        for fn in fns:
            conn.execute("SAVEPOINT op")
            try:
                value = fn(conn)
                conn.execute("RELEASE op")
                engine.end_operation(conn)
            except Exception as exc:
                results.append((False, self._undo_operation(conn, exc)))
            else:
                results.append((True, value))
        return results

    def _undo_operation(self, conn: _Session, exc: Exception) -> Exception:
        """Roll back the operation that raised ``exc``; return what its caller is told.

        The engine may still have the operation's last statements in flight (PostgreSQL's
        pipeline): their first error, if any, happened before ``exc`` and is the failure."""
        engine = self._engine
        try:
            engine.end_operation(conn)
        except engine.error as earlier:
            if not isinstance(exc, engine.error):
                exc = earlier
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        engine.end_operation(conn)  # a failure here fails the whole batch
        if isinstance(exc, engine.error):
            return StorageFailure(f"database write failed: {_reason(exc)}")
        return exc

    async def wait_notice(self, channel: str, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a notification on ``channel``: True as soon as another
        connection commits a write that sends one (PostgreSQL ``LISTEN`` / ``pg_notify``), False
        at the timeout. SQLite has no notifications between processes: it only waits."""
        if self._closed:
            raise DatabaseClosed("the database is closed")
        if self.engine != "postgresql":
            await asyncio.sleep(timeout_s)
            return False
        from storage.postgres import PostgresEngine

        assert isinstance(self._engine, PostgresEngine)
        try:
            if channel not in self._listeners:
                self._listeners[channel] = await self._engine.listen(channel)
            return await self._listeners[channel].wait(timeout_s)
        except self._engine.error as exc:  # the server went away: listen again next time
            listener = self._listeners.pop(channel, None)
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()
            raise StorageFailure(f"cannot wait for notifications: {_reason(exc)}") from exc

    async def schema_version(self) -> int:
        """The applied schema version."""
        return await self.read(self._engine.schema_version)

    async def checkpoint(self) -> None:
        """SQLite: copy the WAL into the main file and truncate it (for backups and tests).
        PostgreSQL manages its own WAL: nothing to do."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._write_thread, self._engine.checkpoint, self._writer)

    async def close(self) -> None:
        """Finish queued writes, then close both connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for listener in self._listeners.values():
            with contextlib.suppress(Exception):
                await listener.close()
        if self._task is not None:
            self._queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await self._task
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._write_thread, self._writer.close)
        await loop.run_in_executor(self._read_thread, self._reader.close)
        self._write_thread.shutdown()
        self._read_thread.shutdown()


def _run_prefetched(conn: Connection, fns: list[Callable[[Connection], Any]],
                    values: list[Any]) -> None:
    """Run ``fns`` in order, appending their results to ``values``, the reads of the
    ``Prefetched`` ones before the first plain function asked first, all together
    (``storage.prefetch``): one that shares a scope with an operation before it, or comes
    after a plain function or after one whose scopes were not all known, asks its reads again
    at its turn."""
    ahead: list[Any] = []
    for fn in fns:
        if not isinstance(fn, Prefetched):
            break
        ahead.append(fn.ask(conn))
    written: set[str] = set()
    blind = False  # an operation ran whose scopes were not all known
    for i, fn in enumerate(fns):
        if not isinstance(fn, Prefetched):
            values.append(fn(conn))
            continue
        asked = ahead[i] if i < len(ahead) and not blind else None
        scopes = set(fn.scopes)
        if asked is not None and fn.found is not None:
            scopes.update(fn.found(asked))
        if asked is not None and not scopes.isdisjoint(written):
            asked = None
        if asked is None and fn.found is not None:
            blind = True
        written |= scopes
        values.append(fn.run(conn, asked))


def _shown(url: str) -> str:
    from storage.postgres import redact

    return redact(url)


def _reason(exc: BaseException) -> str:
    """The driver's message, first line only (PostgreSQL adds context and hints below it)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
