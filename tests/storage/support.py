"""Helpers shared by the ledger tests."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from storage import Database, Limits, check, migrations, postgres_migrations
from storage.location import is_postgres_url
from storage.postgres import WRITE_LOCK, PgConnection
from storage.sql import Connection


class ManualClock:
    """An injectable clock the test moves by hand."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


async def assert_invariants(db: Database, limits: Limits | None = None) -> dict[str, int]:
    """SPEC §1 invariants: nothing below zero, balances = journal, journal sums to zero, limits."""
    report = await check(db, limits)
    assert report.violations == []
    assert sum(report.balances.values()) == 0
    for account, balance in report.balances.items():
        if account not in ("zaps_in", "operator", "lightning_in"):
            assert balance - report.pending[account] >= 0, account
    return report.balances


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def state_digest(db: Database) -> str:
    """A digest that changes with any write: SQLite, the file's bytes (after a checkpoint);
    PostgreSQL, every row of every table of the public schema."""
    if db.engine == "sqlite":
        await db.checkpoint()
        return file_digest(Path(db.location))

    return hashlib.sha256(repr(await all_rows(db)).encode()).hexdigest()


async def all_rows(db: Database) -> tuple[object, ...]:
    """Every row of every table (each table's rows ordered by its first column)."""
    tables = ("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
              " ORDER BY name" if db.engine == "sqlite" else
              "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")

    def rows(conn: Connection) -> tuple[object, ...]:
        return tuple((t, tuple(tuple(r) for r in conn.execute(
                          f"SELECT * FROM {t} ORDER BY 1").fetchall()))  # noqa: S608
                     for (t,) in conn.execute(tables).fetchall())

    return await db.read(rows)


@contextlib.contextmanager
def raw(location: str) -> Iterator[Connection]:
    """A direct connection to the database (autocommit), outside ``Database``: to tamper."""
    conn: sqlite3.Connection | PgConnection
    conn = (PgConnection(location, None) if is_postgres_url(location)
            else sqlite3.connect(location, isolation_level=None))
    try:
        yield conn
    finally:
        conn.close()


def migrate_to(location: str, version: int) -> None:
    """Create the schema of ``version`` only (an older file or database, to upgrade)."""
    if is_postgres_url(location):
        conn = PgConnection(location, None)
        try:
            postgres_migrations.migrate(conn, WRITE_LOCK, version)
        finally:
            conn.close()
    else:
        with contextlib.closing(sqlite3.connect(location, isolation_level=None)) as lite:
            migrations.migrate(lite, version)
