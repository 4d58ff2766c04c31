"""Read the agent's ledger from outside, read-only, for exact assertions.

``LedgerView(location)``: a SQLite file's path or a ``postgresql://`` URL. Every read opens the
database read-only (SQLite ``mode=ro``: the agent may be running, WAL lets both work;
PostgreSQL a read-only transaction), reads, and closes: nothing here can change the agent's
ledger. Columns are read by name, so a new
column does not break a test. Money is integer msat, as in the ledger.

- accounts: ``posted(account)``, ``available(account)``, ``pool_available()``,
  ``balance(pubkey)`` (the ``balance:<pubkey>`` account)
- jobs: ``job(id)``, ``jobs(pubkey=None)``, ``transfers(job_id=None)``, ``payouts(job_id)``
- ``snapshot()`` / :func:`changed_tables`: every table's rows, to prove an operation wrote nothing
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg.rows

from storage.location import is_postgres_url

Row = dict[str, Any]
Snapshot = dict[str, list[tuple[Any, ...]]]

MONEY_TABLES = (
    "accounts", "transfers", "jobs", "daily_usage", "pool_daily", "payouts", "topups",
    "operations",
)
"""The tables that hold money and job state: a request that must change nothing leaves them
exactly as they were."""


class LedgerView:
    def __init__(self, location: Path | str) -> None:
        self.location = location
        self.postgres = is_postgres_url(str(location))

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        if self.postgres:
            with psycopg.connect(str(self.location), autocommit=True,
                                 row_factory=psycopg.rows.dict_row) as pg:
                pg.execute("SET default_transaction_read_only = on")
                yield pg
            return
        conn = sqlite3.connect(f"file:{self.location}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        with self._connect() as conn:
            return [dict(r) for r in conn.execute(self._sql(sql), tuple(params)).fetchall()]

    def tables(self) -> list[str]:
        if self.postgres:
            rows = self.query("SELECT table_name AS name FROM information_schema.tables"
                              " WHERE table_schema = current_schema() ORDER BY table_name")
        else:
            rows = self.query("SELECT name FROM sqlite_master WHERE type = 'table' "
                              "AND name NOT LIKE 'sqlite_%' ORDER BY name")
        return [str(r["name"]) for r in rows]

    # -- accounts ---------------------------------------------------------------------

    def _account(self, account: str) -> Row:
        rows = self.query("SELECT * FROM accounts WHERE id = ?", (account,))
        return rows[0] if rows else {"debits_posted": 0, "credits_posted": 0,
                                     "debits_pending": 0, "credits_pending": 0}

    def posted(self, account: str) -> int:
        """Posted balance: credits minus debits (external accounts go negative)."""
        row = self._account(account)
        return int(row["credits_posted"]) - int(row["debits_posted"])

    def available(self, account: str) -> int:
        """Posted balance minus pending debits (what may still be reserved)."""
        row = self._account(account)
        return int(row["credits_posted"]) - int(row["debits_posted"]) - int(row["debits_pending"])

    def pending_debits(self, account: str) -> int:
        return int(self._account(account)["debits_pending"])

    def pool_available(self) -> int:
        return self.available("pool")

    def balance(self, pubkey: str) -> int:
        return self.posted(f"balance:{pubkey}")

    def accounts(self) -> dict[str, int]:
        return {str(r["id"]): int(r["credits_posted"]) - int(r["debits_posted"])
                for r in self.query("SELECT * FROM accounts")}

    # -- jobs, transfers, payouts -----------------------------------------------------

    def job(self, job_id: str) -> Row | None:
        rows = self.query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def jobs(self, pubkey: str | None = None) -> list[Row]:
        if pubkey is None:
            return self.query("SELECT * FROM jobs ORDER BY created_at, rowid")
        return self.query("SELECT * FROM jobs WHERE pubkey = ? ORDER BY created_at, rowid",
                          (pubkey,))

    def transfers(self, job_id: str | None = None) -> list[Row]:
        if job_id is None:
            return self.query("SELECT * FROM transfers ORDER BY id")
        return self.query("SELECT * FROM transfers WHERE job_id = ? ORDER BY id", (job_id,))

    def payouts(self, job_id: str | None = None) -> list[Row]:
        if job_id is None:
            return self.query("SELECT * FROM payouts ORDER BY id")
        return self.query("SELECT * FROM payouts WHERE job_id = ? ORDER BY id", (job_id,))

    def topups(self, pubkey: str) -> list[Row]:
        return self.query("SELECT * FROM topups WHERE pubkey = ? ORDER BY created_at", (pubkey,))

    # -- whole-table comparisons ------------------------------------------------------

    def snapshot(self, tables: Iterable[str] | None = None) -> Snapshot:
        names = list(tables) if tables is not None else self.tables()
        present = set(self.tables())
        out: Snapshot = {}
        with self._connect() as conn:
            for name in names:
                if name not in present:
                    continue
                rows = conn.execute(f'SELECT * FROM "{name}"').fetchall()  # noqa: S608
                out[name] = sorted((tuple(dict(r).values()) for r in rows), key=repr)
        return out


def changed_tables(before: Mapping[str, list[tuple[Any, ...]]],
                   after: Mapping[str, list[tuple[Any, ...]]]) -> set[str]:
    """Names of the tables whose rows differ (a table that appeared or vanished counts)."""
    names = set(before) | set(after)
    return {n for n in names if before.get(n) != after.get(n)}
