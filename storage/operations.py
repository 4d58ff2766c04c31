"""Idempotent operations: each runs once per key; a repeat returns the stored original result."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from storage.errors import IdempotencyConflict
from storage.outcomes import _Value
from storage.sql import Connection, Cursor, Held

V = TypeVar("V", bound=_Value)


def job_key(job_id: str, step: str) -> str:
    """The key of one step of a job (``job:<id>:<step>``), for operations and transfers."""
    return f"job:{job_id}:{step}"


def once(
    conn: Connection,
    key: str,
    op: str,
    args: object,
    cls: type[V],
    compute: Callable[[], V],
) -> V:
    """Run ``compute`` once per ``key``, storing its result with ``op`` and ``args``.

    A repeat with the same ``op`` and ``args`` returns the stored result and runs nothing; with
    others it raises ``IdempotencyConflict``. If ``compute`` raises, nothing is stored (its
    writes are rolled back with it), so a retry runs it again.
    """
    return once_with(conn, key, op, args, cls, None, lambda _: compute())


def once_with(
    conn: Connection,
    key: str,
    op: str,
    args: object,
    cls: type[V],
    asked: Cursor | None,
    compute: Callable[[Any], V],
    held: Sequence[Held] = (),
    lookup: Cursor | None = None,
) -> V:
    """``once``, with ``asked``: a statement the caller asked for just before (a read that
    ``compute`` needs first), and ``held``: reads asked for the later steps of ``compute``. They
    are read together with the idempotency lookup — one round trip on PostgreSQL — and
    ``asked``'s first row (None if none) is handed to ``compute``. ``lookup``: the idempotency
    lookup, asked for ahead with them (``ask_once``)."""
    args_text = json.dumps(args, separators=(",", ":"))
    row = (ask_once(conn, key) if lookup is None else lookup).fetchone()
    first = None if asked is None else asked.fetchone()  # read now, whatever follows
    for read in held:
        read.load()
    if row is not None:
        if row[0] != op or row[1] != args_text:
            raise IdempotencyConflict(
                f"key {key!r} was already used for {row[0]} with other arguments"
            )
        return cls.from_json(row[2])
    result = compute(first)
    conn.execute(
        "INSERT INTO operations (key, op, args, result) VALUES (?, ?, ?, ?)",
        (key, op, args_text, result.to_json()),
    )
    return result


def ask_once(conn: Connection, key: str) -> Cursor:
    """Ask for the stored result of ``key`` (``once_with``'s lookup), without reading it."""
    return conn.execute("SELECT op, args, result FROM operations WHERE key = ?", (key,))


def seen(conn: Connection, key: str) -> bool:
    return conn.execute("SELECT 1 FROM operations WHERE key = ?", (key,)).fetchone() is not None
