"""The SQLite engine: one file in WAL mode, ``synchronous=FULL``; writers serialize through
SQLite's write lock (``BEGIN IMMEDIATE``) and its busy timeout, also across OS processes."""

from __future__ import annotations

import sqlite3
import time

from storage.errors import StorageFailure
from storage.migrations import migrate, schema_version

BUSY_TIMEOUT_MS = 30_000


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


class SqliteEngine:
    """Opens, begins and checkpoints SQLite connections for ``Database``."""

    name = "sqlite"
    error: type[Exception] = sqlite3.Error
    prefetch = False  # reads run at once, in process: nothing to ask ahead

    def __init__(self, path: str) -> None:
        self.path = path

    def open(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        """The writer (migrated) and the reader connection."""
        writer = _connect(self.path)
        try:
            mode = _switch_to_wal(writer)
            if mode.lower() != "wal":
                raise StorageFailure(f"cannot switch the database to WAL mode (got {mode})")
            migrate(writer)
            reader = _connect(self.path)
        except BaseException:
            writer.close()
            raise
        return writer, reader

    def begin_write(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def end_operation(self, conn: sqlite3.Connection) -> None:
        """Nothing to wait for: every statement ran when it was executed."""

    def commit(self, conn: sqlite3.Connection) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")

    def begin_read(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN DEFERRED")

    def schema_version(self, conn: sqlite3.Connection) -> int:
        return schema_version(conn)

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
