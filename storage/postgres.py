"""The PostgreSQL engine: the same operations, on a server several agent processes share.

The operations are written once (see ``storage.sql``) and run unchanged: :class:`PgConnection`
turns their ``?`` parameters into the driver's ``%s``. The driver is psycopg 3 (synchronous): the
operations are synchronous functions run inside one transaction on the database's worker thread,
as on SQLite; an asynchronous driver would make every statement a round trip through the event
loop (docs/ARCHITECTURE.md has the comparison).

Writes: each batch of operations is one transaction that first locks the ``write_lock`` table
(``EXCLUSIVE``: readers' ``ACCESS SHARE`` does not conflict) and then takes a transaction-scoped
advisory lock (:data:`WRITE_LOCK`, the one migrations hold), so write transactions on one
database run one at a time, in every process, exactly like SQLite's ``BEGIN IMMEDIATE``. Writers
queue on the table lock, not inside the advisory lock's function call: measured with four
processes, queued in the function call they left the hot rows' table (the pool's account,
updated by nearly every operation) four times larger after 6 s (dead row versions not pruned)
and settled 0.6–0.8× what one process settles alone; queued on the table lock, 1.1–1.5×.

The write transaction's statements go through libpq's pipeline mode
(``storage.postgres_pipeline``): a statement whose result the operation does not read (an
``INSERT`` or ``UPDATE`` without ``RETURNING``, a savepoint) goes out without waiting for the
server; a read waits for everything sent before it; ``PostgresEngine.end_operation`` waits for
all of them: once after a batch's last operation, or at the end of each operation when a batch
in which one failed runs again one at a time (``storage.database``), so a failed statement
rolls back its own operation only. A round trip (~80–150 µs on one host, more across a network)
is thus paid per read, not per statement. The transaction is READ COMMITTED:
each statement sees everything committed before it, and nothing else can commit while the lock
is held, so every operation sees the state it would see serially (a REPEATABLE READ snapshot
would be taken before the lock is granted: stale). ``synchronous_commit`` is forced on: a
resolved write is flushed to the server's WAL. Reads run in REPEATABLE READ READ ONLY
transactions (one consistent snapshot).

The location is a ``postgresql://`` (or ``postgres://``) URL that must not hold the password:
give it apart (``password``), from the environment or a 0600 file; libpq's own ``PGPASSWORD`` and
``~/.pgpass`` work too. A URL with a password is refused, and no message ever repeats the URL as
given.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg.sql
from psycopg.conninfo import conninfo_to_dict

from storage.errors import InvalidInput
from storage.postgres_migrations import migrate, schema_version
from storage.postgres_pipeline import WritePipeline
from storage.sql import Cursor

WRITE_LOCK = 0x74696D6D79  # "timmy": the advisory lock every write transaction holds
CONNECT_TIMEOUT_S = 10


def check_url(url: str) -> dict[str, str]:
    """The URL's connection parameters; ``InvalidInput`` when it cannot be parsed or holds a
    password (the message never repeats the URL: it could hold one)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        raise InvalidInput("the PostgreSQL URL cannot be parsed") from None
    if "password" in params:
        raise InvalidInput(
            "the PostgreSQL URL holds a password: remove it from the URL and give it apart "
            "(TIMMY_DB_PASSWORD, a 0600 file, PGPASSWORD or ~/.pgpass)"
        )
    return {k: str(v) for k, v in params.items()}


def redact(url: str) -> str:
    """``url`` as shown in messages: host, port and database only."""
    params = check_url(url)
    host = params.get("host", "")
    port = f":{params['port']}" if "port" in params else ""
    user = f"{params['user']}@" if "user" in params else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname', '')}"


@functools.lru_cache(maxsize=1024)
def _translate(sql: str) -> str:
    """``?`` parameters → ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """A psycopg connection (autocommit: transactions are begun explicitly) that runs the
    operations' SQL. Reconnects on the next transaction after the server dropped it.

    Between ``begin_pipeline`` and ``commit`` / ``rollback`` (a write transaction) its
    statements go through a ``WritePipeline``: each is sent without waiting for its result; a
    fetch (``fetchone``, ``fetchall``, iterating, ``rowcount``) waits for the results up to its
    own, ``sync`` for all of them. An error in a statement nobody waited for surfaces at the
    next fetch or ``sync``; the server skips everything sent after it until then."""

    def __init__(self, url: str, password: str | None) -> None:
        self._url = url
        self._password = password
        self._conn = self._connect()
        self._pipeline = WritePipeline(self._conn)
        self._in_pipeline = False

    def _connect(self) -> psycopg.Connection[Any]:
        extra: dict[str, Any] = {} if self._password is None else {"password": self._password}
        conn = psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name="timmy", **extra)
        conn.execute("SET synchronous_commit = on")
        return conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        if self._in_pipeline:
            return self._pipeline.execute(sql, parameters)
        return self._conn.execute(_translate(sql), tuple(parameters))

    def script(self, sql: str) -> None:
        """Run several statements (a migration) as they are, without parameters."""
        self._conn.execute(sql.encode())

    def begin_pipeline(self) -> None:
        """Send the following statements without waiting for each result."""
        assert not self._in_pipeline, "already in pipeline mode"
        self._pipeline.enter()
        self._in_pipeline = True

    def sync(self) -> None:
        """Wait for the results of every statement sent; raise the first error among them
        (the results after it are collected all the same: the connection is usable again)."""
        if self._in_pipeline:
            self._pipeline.sync()

    def commit(self) -> None:
        """COMMIT, wait for it and leave pipeline mode. A transaction the server had aborted
        (which COMMIT only rolls back) raises."""
        assert self._in_pipeline, "no write transaction"
        done = self._pipeline.execute("COMMIT", ())
        self._pipeline.sync()
        self._in_pipeline = False
        self._pipeline.leave()
        if done.command_status != b"COMMIT":
            raise psycopg.errors.InFailedSqlTransaction(
                f"the write transaction was not committed ({done.command_status!r})")

    def rollback(self) -> None:
        """ROLLBACK, leaving pipeline mode first whatever its errors. A connection that cannot
        leave it is closed (the server rolls back): the next transaction reconnects."""
        if self._in_pipeline:
            self._in_pipeline = False
            try:
                with contextlib.suppress(psycopg.Error):
                    self._pipeline.sync()
                self._pipeline.leave()
            except psycopg.Error:
                self._conn.close()
                raise
        self._conn.execute("ROLLBACK")

    def ensure_connected(self) -> None:
        if self._conn.closed or self._conn.broken:
            self._conn.close()
            self._in_pipeline = False
            self._conn = self._connect()
            self._pipeline = WritePipeline(self._conn)

    def close(self) -> None:
        self._conn.close()


class PgListener:
    """A connection of its own, LISTENing on one channel (asynchronous: it waits on the event
    loop, not on the database's threads). ``wait(timeout_s)``: True as soon as a notification
    has arrived (another process committed a ``pg_notify`` on the channel), False at the
    timeout."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, url: str, password: str | None, channel: str) -> PgListener:
        extra: dict[str, Any] = {} if password is None else {"password": password}
        conn = await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
            application_name="timmy-listen", **extra)
        try:
            await conn.execute(psycopg.sql.SQL("LISTEN {}").format(
                psycopg.sql.Identifier(channel)))
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def wait(self, timeout_s: float) -> bool:
        async for _ in self._conn.notifies(timeout=timeout_s, stop_after=1):
            return True
        return False

    async def close(self) -> None:
        await self._conn.close()


class PostgresEngine:
    """Opens and begins PostgreSQL connections for ``Database``."""

    name = "postgresql"
    error: type[Exception] = psycopg.Error
    prefetch = True  # a batch asks its operations' reads ahead, in one round trip

    def __init__(self, url: str, password: str | None) -> None:
        check_url(url)
        self.url = url
        self._password = password

    def connect(self) -> PgConnection:
        return PgConnection(self.url, self._password)

    def open(self) -> tuple[PgConnection, PgConnection]:
        """The writer (migrated) and the reader connection."""
        writer = self.connect()
        try:
            migrate(writer, WRITE_LOCK)
            reader = self.connect()
        except BaseException:
            writer.close()
            raise
        return writer, reader

    def begin_write(self, conn: PgConnection) -> None:
        """Begin, take the write locks (waiting for them), and switch to pipeline mode: an
        operation's statements go out without waiting for each result. Writers queue on the
        ``write_lock`` table; the advisory lock after it is then free unless a migration holds
        it."""
        conn.ensure_connected()
        conn.begin_pipeline()
        conn.execute("BEGIN")
        conn.execute("LOCK TABLE write_lock IN EXCLUSIVE MODE")
        conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
        conn.sync()

    def end_operation(self, conn: PgConnection) -> None:
        """Wait for the operation's statements: the first error among them is raised here."""
        conn.sync()

    def commit(self, conn: PgConnection) -> None:
        conn.commit()

    def rollback(self, conn: PgConnection) -> None:
        conn.rollback()

    def begin_read(self, conn: PgConnection) -> None:
        conn.ensure_connected()
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def schema_version(self, conn: PgConnection) -> int:
        return schema_version(conn)

    def checkpoint(self, conn: PgConnection) -> None:
        """Nothing to do: the server manages its own WAL."""

    async def listen(self, channel: str) -> PgListener:
        return await PgListener.open(self.url, self._password, channel)
