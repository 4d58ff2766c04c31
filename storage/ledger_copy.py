"""Moving a ledger from a SQLite file into an empty PostgreSQL database (``timmy ledger copy``).

Every row of every table is copied as it is — ids, keys, journal, stored results, requests,
outbox, leases — in one write transaction on the target (all or nothing), the insertion order
kept (SQLite's ``rowid`` becomes the ``rowid`` column where the operations order by it) and the
identity sequences moved past the copied ids. Both databases are first migrated to the same
version (opening them does that). The proof is the caller's: ``check`` on both sides must give
equal reports.
"""

from __future__ import annotations

from typing import Any

from storage.database import Database
from storage.errors import InvalidInput, TargetNotEmpty
from storage.postgres_migrations import IDENTITIES, TABLES
from storage.sql import Connection

_ROWID_TABLES = frozenset(table for table, column in IDENTITIES if column == "rowid")
_SEEDED = "accounts"  # the one table a new ledger fills (the system accounts, all at zero)

Rows = dict[str, tuple[list[str], list[tuple[Any, ...]]]]


def _read_sqlite(conn: Connection) -> Rows:
    tables = {str(r[0]) for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
    unknown = sorted(tables - set(TABLES))
    if unknown:
        raise InvalidInput(f"the SQLite ledger holds tables this code cannot copy: {unknown}")
    out: Rows = {}
    for table in TABLES:
        columns = [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")]
        if table in _ROWID_TABLES:
            columns = ["rowid", *columns]
        rows = conn.execute(
            f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1").fetchall()  # noqa: S608
        out[table] = (columns, [tuple(r) for r in rows])
    return out


def _empty(conn: Connection) -> bool:
    for table in TABLES:
        if table == _SEEDED:
            continue
        if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:  # noqa: S608
            return False
    moved = conn.execute(
        "SELECT 1 FROM accounts WHERE debits_posted <> 0 OR credits_posted <> 0"
        " OR debits_pending <> 0 OR credits_pending <> 0 OR id LIKE 'balance:%' LIMIT 1")
    return moved.fetchone() is None


def _write(conn: Connection, data: Rows) -> int:
    if not _empty(conn):
        raise TargetNotEmpty("the target database already holds a ledger: copy into an empty one")
    conn.execute("DELETE FROM accounts")  # the seed: the copy brings the same rows, with balances
    copied = 0
    for table in TABLES:
        columns, rows = data[table]
        if not rows:
            continue
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
        for row in rows:
            conn.execute(sql, row)
        copied += len(rows)
    for table, column in IDENTITIES:
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"  # noqa: S608
            f" COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)")
    return copied


async def copy_ledger(source: Database, target: Database) -> int:
    """Copy every row of ``source`` (SQLite) into ``target`` (PostgreSQL, empty: else
    ``TargetNotEmpty`` and nothing written); how many rows."""
    if source.engine != "sqlite" or target.engine != "postgresql":
        raise InvalidInput("a ledger is copied from a SQLite file into a PostgreSQL database")
    if await source.schema_version() != await target.schema_version():
        raise InvalidInput("the two databases are not at the same schema version")
    data = await source.read(_read_sqlite)
    return await target.write(lambda conn: _write(conn, data))
