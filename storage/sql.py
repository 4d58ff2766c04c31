"""What an operation sees of a database connection, whichever the engine.

Every operation is one synchronous function ``fn(conn)`` written once, in the SQL both engines
accept: ``?`` parameters, ``INSERT … ON CONFLICT``, ``RETURNING``, ``CAST(… AS BIGINT)`` around
sums, and an insertion-order column named ``rowid`` (SQLite's own; a generated column on
PostgreSQL). ``sqlite3.Connection`` fits these protocols as it is; ``storage.postgres`` adapts a
PostgreSQL connection to them.

On PostgreSQL a write transaction's statements are pipelined: ``execute`` returns at once and a
result is waited for when first read (rows or ``rowcount``), together with everything asked
before it. So an operation asks the reads it needs together before reading any of them (one
round trip: ``jobs.ask_job``, ``accounts.ask_accounts``, ``operations.once_with``; reads asked
for a later step of the operation are ``Held``), and reads every
statement it asked before anything can raise: SQLite keeps an unread statement open, holding its
snapshot. An operation may run twice before its transaction commits (``storage.database``: a
batch in which one fails runs again): it has no effect outside ``conn`` and computes its result
from what it reads and its arguments alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol


class Cursor(Protocol):
    """The result of one statement."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class RowsCursor(ABC):
    """A ``Cursor`` over rows received whole, when first asked for (``_all_rows``)."""

    __slots__ = ("_pos",)

    def __init__(self) -> None:
        self._pos = 0

    @abstractmethod
    def _all_rows(self) -> list[Any]:
        """Every row of the result (received now if they were not yet)."""

    def fetchone(self) -> Any:
        rows = self._all_rows()
        if self._pos >= len(rows):
            return None
        self._pos += 1
        return rows[self._pos - 1]

    def fetchall(self) -> list[Any]:
        rows = self._all_rows()[self._pos:]
        self._pos += len(rows)
        return rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class Held(RowsCursor):
    """A read asked for ahead of the step of the operation that needs it (so it comes back in
    the same round trip as the operation's first reads, or, asked for a whole batch, in the
    batch's: ``storage.prefetch``): ``load`` reads all its rows, at once
    (``operations.once_with`` loads every held read before anything can raise); the step then
    reads it as a ``Cursor``. Valid only while nothing written in between touches the rows it
    reads, except counters whose changes ``update`` adds (``storage.prefetch``: the accounts,
    the daily counters)."""

    __slots__ = ("_cursor", "_rows", "_update")

    def __init__(self, cursor: Cursor,
                 update: Callable[[list[Any]], list[Any]] | None = None) -> None:
        super().__init__()
        self._cursor = cursor
        self._update = update
        self._rows: list[Any] | None = None

    def load(self) -> list[Any]:
        if self._rows is None:
            rows = self._cursor.fetchall()
            self._rows = rows if self._update is None else self._update(rows)
        return self._rows

    def _all_rows(self) -> list[Any]:
        return self.load()

    @property
    def rowcount(self) -> int:
        return len(self.load())


class Connection(Protocol):
    """A connection inside a transaction the database opened; run statements with ``execute``."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...
