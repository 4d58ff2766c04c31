"""What an operation sees of a database connection, whichever the engine.

Every operation is one synchronous function ``fn(conn)`` written once, in the SQL both engines
accept: ``?`` parameters, ``INSERT … ON CONFLICT``, ``RETURNING``, ``CAST(… AS BIGINT)`` around
sums, and an insertion-order column named ``rowid`` (SQLite's own; a generated column on
PostgreSQL). ``sqlite3.Connection`` fits these protocols as it is; ``storage.postgres`` adapts a
PostgreSQL connection to them.
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
