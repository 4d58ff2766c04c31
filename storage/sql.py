"""What an operation sees of a database connection, whichever the engine.

Every operation is one synchronous function ``fn(conn)`` written once, in the SQL both engines
accept: ``?`` parameters, ``INSERT … ON CONFLICT``, ``RETURNING``, ``CAST(… AS BIGINT)`` around
sums, and an insertion-order column named ``rowid`` (SQLite's own; a generated column on
PostgreSQL). ``sqlite3.Connection`` fits these protocols as it is; ``storage.postgres`` adapts a
PostgreSQL connection to them.

On PostgreSQL a write transaction's statements are pipelined: ``execute`` returns at once and a
result is waited for when first read (rows or ``rowcount``), together with everything asked
before it. So an operation asks the reads it needs together before reading any of them (one
round trip: ``jobs.ask_job``, ``accounts.ask_account``, ``operations.once_with``), and reads every
statement it asked before anything can raise: SQLite keeps an unread statement open, holding its
snapshot. An operation may run twice before its transaction commits (``storage.database``: a
batch in which one fails runs again): it has no effect outside ``conn`` and computes its result
from what it reads and its arguments alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol


class Cursor(Protocol):
    """The result of one statement."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection inside a transaction the database opened; run statements with ``execute``."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...
