"""A write transaction's statements on PostgreSQL, sent in libpq's pipeline mode.

``WritePipeline`` drives the connection's libpq handle (``psycopg.pq``) directly while a write
transaction runs: ``execute`` only appends the statement to the output buffer and returns a
``PipelinedResult``; nothing is sent or waited for until a result is asked for (``fetchone``,
``fetchall``, iterating, ``rowcount``: everything queued before it goes out, and its result
comes back in one round trip) or ``sync`` waits for all of them. A result already received (a
batch's reads asked ahead: ``storage.prefetch``) is read without sending anything, until
``FLUSH_AFTER`` statements are queued: the server gets the writes in chunks, a send and a
wake-up per chunk instead of per operation, and still works on them while the client goes on.
psycopg's own pipeline does the same at ~28 µs of client CPU per statement (a cursor, a poll
and a send each); this does it at a few µs: the parameters are adapted by psycopg's
``Transformer`` as psycopg would, and each distinct statement is prepared once per connection.

Errors: the first statement the server rejects makes it skip every later one until the next
sync; that first error is raised by any fetch of a later result and by ``sync`` (which always
collects everything, so the connection is usable again after it).
"""

from __future__ import annotations

import functools
import select
from collections import deque
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer
from psycopg.errors import PipelineAborted, error_from_result
from psycopg.pq.abc import PGresult

from storage.sql import RowsCursor

FLUSH_AFTER = 16  # statements a read sends first even when its own result is already here
MAX_PREPARED = 512  # distinct statements prepared per connection; later ones run unprepared
_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_COMMAND_OK = pq.ExecStatus.COMMAND_OK
_PIPELINE_SYNC = pq.ExecStatus.PIPELINE_SYNC
_TEXT = pq.Format.TEXT


@functools.lru_cache(maxsize=1024)
def native(sql: str) -> tuple[bytes, int]:
    """``?`` parameters → ``$1``, ``$2`` …; the statement as bytes and its parameter count."""
    parts = sql.split("?")
    text = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
    return text.encode(), len(parts) - 1


class _Parse:
    """The server's answer to preparing a statement, awaited like a result."""

    __slots__ = ("key",)

    def __init__(self, key: tuple[bytes, tuple[int, ...]]) -> None:
        self.key = key


class PipelinedResult(RowsCursor):
    """One statement's result, received when first asked for."""

    __slots__ = ("_pipeline", "_rows", "pgresult")

    def __init__(self, pipeline: WritePipeline) -> None:
        super().__init__()
        self._pipeline = pipeline
        self.pgresult: PGresult | None = None
        self._rows: list[Any] | None = None

    def _result(self) -> PGresult:
        if self.pgresult is None:
            self._pipeline.receive(self)
        result = self.pgresult
        assert result is not None
        if result.status != _TUPLES_OK and result.status != _COMMAND_OK:
            raise self._pipeline.failure(result)
        return result

    @property
    def rowcount(self) -> int:
        result = self._result()
        if result.status == _TUPLES_OK:
            return result.ntuples
        return result.command_tuples if result.command_tuples is not None else -1

    @property
    def command_status(self) -> bytes | None:
        return self._result().command_status

    def _all_rows(self) -> list[Any]:
        if self._rows is None:
            result = self._result()
            if result.status != _TUPLES_OK:
                raise psycopg.ProgrammingError("the statement did not produce rows")
            self._rows = self._pipeline.load_rows(result)
        return self._rows


class WritePipeline:
    """The statements of write transactions on one connection (made for that connection: a new
    connection needs a new ``WritePipeline``). ``enter`` before the first statement, ``leave``
    after the last ``sync``."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._pg = conn.pgconn
        self._encoding = conn.info.encoding
        self._tx = Transformer(conn)
        self._prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self._names = 0  # prepared statement names are never reused on a connection
        self._queue: deque[PipelinedResult | _Parse | None] = deque()  # None: a sync
        self._unsent = 0
        self._error: psycopg.Error | None = None  # the first error since the last sync
        self._poll = select.poll()
        self._fd = self._pg.socket
        self._poll.register(self._fd, select.POLLIN)

    def enter(self) -> None:
        self._pg.enter_pipeline_mode()

    def leave(self) -> None:
        """Leave pipeline mode (after a ``sync``: nothing may be outstanding)."""
        self._pg.exit_pipeline_mode()

    def execute(self, sql: str, params: Sequence[Any]) -> PipelinedResult:
        """Queue ``sql`` (``?`` parameters) with ``params``; nothing waits."""
        command, count = native(sql)
        if len(params) != count:
            raise psycopg.ProgrammingError(
                f"the statement takes {count} parameters, {len(params)} given")
        values = self._tx.dump_sequence(params, [PyFormat.AUTO] * count)
        types, formats = self._tx.types or (), self._tx.formats
        key = (command, types)
        name = self._prepared.get(key)
        if name is None and len(self._prepared) < MAX_PREPARED:
            name = f"timmy_w{self._names}".encode()
            self._names += 1
            self._pg.send_prepare(name, command, param_types=types)
            self._prepared[key] = name
            self._queue.append(_Parse(key))
        if name is None:
            self._pg.send_query_params(command, values, param_types=types,
                                       param_formats=formats, result_format=_TEXT)
        else:
            self._pg.send_query_prepared(name, values, param_formats=formats,
                                         result_format=_TEXT)
        result = PipelinedResult(self)
        self._queue.append(result)
        self._unsent += 1
        return result

    def sync(self) -> None:
        """Wait for every statement queued; raise the first error among them (everything is
        collected first: the transaction can go on, with a ``ROLLBACK TO`` if it failed)."""
        self._pg.pipeline_sync()
        self._queue.append(None)
        self._flush()
        while self._queue:
            self._receive_next()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def receive(self, target: PipelinedResult) -> None:
        """Receive results up to ``target``'s, sending what is queued first — unless they have
        already arrived and fewer than ``FLUSH_AFTER`` statements wait to be sent."""
        pg = self._pg
        while target.pgresult is None and self._queue and not pg.is_busy():
            self._receive_next()  # already received: no wait
        if target.pgresult is not None and self._unsent < FLUSH_AFTER:
            return
        if self._unsent:
            pg.send_flush_request()
            self._flush()
        while target.pgresult is None:
            if not self._queue:
                raise psycopg.InterfaceError("a result was asked for after its sync")
            self._receive_next()

    def failure(self, result: PGresult) -> psycopg.Error:
        """The error to raise for a failed or skipped statement: the first since the sync."""
        if self._error is not None:
            return self._error
        if result.status == pq.ExecStatus.PIPELINE_ABORTED:
            return PipelineAborted("the statement was skipped after an error")
        return error_from_result(result, encoding=self._encoding)

    def load_rows(self, result: PGresult) -> list[Any]:
        self._tx.set_pgresult(result)
        return self._tx.load_rows(0, result.ntuples, tuple)

    def _flush(self) -> None:
        """Send the whole output buffer, reading meanwhile (the server may be blocked on
        sending us results)."""
        while self._pg.flush():
            self._wait(select.POLLIN | select.POLLOUT)
            self._pg.consume_input()
        self._unsent = 0

    def _wait(self, events: int) -> None:
        self._poll.modify(self._fd, events)
        self._poll.poll()

    def _next_result(self) -> PGresult | None:
        while self._pg.is_busy():
            self._wait(select.POLLIN)
            self._pg.consume_input()
        return self._pg.get_result()

    def _receive_next(self) -> None:
        entry = self._queue[0]
        result = self._next_result()
        if result is None:
            raise psycopg.OperationalError("the connection returned no result")
        if entry is None:
            if result.status != _PIPELINE_SYNC:
                raise psycopg.OperationalError(f"expected a sync, got {result.status}")
            self._queue.popleft()
            return
        if self._next_result() is not None:  # each statement's results end with a None
            raise psycopg.OperationalError("a statement returned several results")
        self._queue.popleft()
        if result.status == pq.ExecStatus.FATAL_ERROR and self._error is None:
            self._error = error_from_result(result, encoding=self._encoding)
        if isinstance(entry, _Parse):
            if result.status != _COMMAND_OK:  # failed or skipped: prepare it again next time
                self._prepared.pop(entry.key, None)
        else:
            entry.pgresult = result
