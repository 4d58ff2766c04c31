"""Reads asked ahead of their operation: a batch's reads in one round trip (PostgreSQL).

A write batch runs its operations one after the other in one transaction (``storage.database``).
On PostgreSQL each operation's first reads cost a round trip in which the client waits for the
server and then the server for the client. A ``Prefetched`` operation splits into ``ask`` (send
its reads, without waiting) and ``run`` (read them, decide, write): the batch asks the reads of
all its prefetched operations first, in one flight, then runs them in order, the server
executing each one's writes while the client works on the next.

A read asked ahead was executed before the writes of the operations before it in the batch, so
it is used only where those writes cannot have changed what it read:

- the rows of one job (the job, its operations' results, its transfers, by their ``job:<id>:``
  keys), of one invoice hash, of one payment key are read and written only by the operations
  that name them in their ``scopes`` (``job_scope``, ``invoice_scope``, ``payment_scope``; a
  payment found by its invoice's hash adds its job's, ``found``): an operation's read-ahead is
  used when no operation before it in the batch shared a scope with it and none was a plain
  function (which may write anything); else it asks again, at its turn (``run(conn, None)``),
  and after one that asked again without knowing all its scopes (``found``), every later one
  does;
- the counters every operation moves — the accounts (``accounts._move``, ``ensure_account``), the
  asker's day (``daily_usage``) and the pool's (``pool_daily``, ``subsidy.count``) — are read
  ahead all the same and brought up to date: while a batch runs, ``Changes`` adds up what its
  statements added to each counter, and a read asked ahead is loaded (``Held``) plus what was
  added between its asking and its loading, exactly what a read at its turn would return (the
  write lock is held: nothing else writes). A read asked and loaded at its turn gets nothing
  added.

The database's CHECK constraints still refuse a negative account, whatever the client computed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from storage.sql import Connection

A = TypeVar("A")
T = TypeVar("T")

Rows = list[Any]


def job_scope(job_id: str) -> str:
    """The scope of a job's rows: the job, its operations' results, its ``job:<id>:``
    transfers."""
    return "job " + job_id


def invoice_scope(payment_hash: str) -> str:
    """The scope of the job row that holds an invoice's payment hash."""
    return "invoice " + payment_hash


def payment_scope(key: str) -> str:
    """The scope of a payment's key: its stored result and its ``<key>:`` transfers."""
    return "payment " + key


@dataclass(frozen=True, slots=True)
class Prefetched(Generic[A, T]):
    """A write operation whose reads may be asked ahead: ``ask(conn)`` sends them (nothing is
    read), ``run(conn, asked)`` is the operation (``asked`` None: it asks them itself). Called
    as a plain write function, it asks at its turn. ``scopes``: every group of rows it reads or
    writes (besides the counters ``Changes`` follows); ``found``: the scopes its reads asked
    ahead name (the job an invoice's hash belongs to), when ``scopes`` cannot know them."""

    scopes: tuple[str, ...]
    ask: Callable[[Connection], A]
    run: Callable[[Connection, A | None], T]
    found: Callable[[A], tuple[str, ...]] | None = None

    def __call__(self, conn: Connection) -> T:
        return self.run(conn, None)


class Changes:
    """What a batch's statements added to the counters so far: per account its four columns,
    per (pubkey, day) the asker's usage, per day the pool's spending."""

    __slots__ = ("accounts", "spent", "usage")

    def __init__(self) -> None:
        self.accounts: dict[str, tuple[int, int, int, int]] = {}
        self.usage: dict[tuple[str, str], tuple[int, int]] = {}
        self.spent: dict[str, int] = {}


_CHANGES: ContextVar[Changes | None] = ContextVar("ledger_batch_changes", default=None)


@contextlib.contextmanager
def following() -> Iterator[None]:
    """Follow the counters' changes while the block runs (one batch, on its writer thread)."""
    token = _CHANGES.set(Changes())
    try:
        yield
    finally:
        _CHANGES.reset(token)


def moved(debit: str, credit: str, posted: int, pending: int) -> None:
    """``accounts._move`` added these to the debit account's debit columns and the credit
    account's credit ones."""
    changes = _CHANGES.get()
    if changes is None:
        return
    dp, cp, dq, cq = changes.accounts.get(debit, (0, 0, 0, 0))
    changes.accounts[debit] = (dp + posted, cp, dq + pending, cq)
    dp, cp, dq, cq = changes.accounts.get(credit, (0, 0, 0, 0))
    changes.accounts[credit] = (dp, cp + posted, dq, cq + pending)


def counted(pubkey: str, day: str, amount: int, jobs: int) -> None:
    """``subsidy.count`` added these to the asker's day and the pool's."""
    changes = _CHANGES.get()
    if changes is None:
        return
    absorbed, count = changes.usage.get((pubkey, day), (0, 0))
    changes.usage[(pubkey, day)] = (absorbed + amount, count + jobs)
    changes.spent[day] = changes.spent.get(day, 0) + amount


def accounts_since(ids: tuple[str, ...]) -> Callable[[Rows], Rows] | None:
    """For a read of ``ids``' rows (id, debits_posted, credits_posted, debits_pending,
    credits_pending) asked now: what brings its rows up to date when loaded (None: no batch is
    followed). An account without a row reads as zeros (``ensure_account`` creates it so)."""
    changes = _CHANGES.get()
    if changes is None:
        return None
    zero = (0, 0, 0, 0)
    then = {account: changes.accounts.get(account, zero) for account in ids}

    def update(rows: Rows) -> Rows:
        by_id = {str(r[0]): tuple(r[1:5]) for r in rows}
        out: Rows = []
        for account in ids:
            now = changes.accounts.get(account, zero)
            row = by_id.get(account)
            if now == then[account]:
                if row is not None:
                    out.append((account, *row))
                continue
            base = row if row is not None else zero
            out.append((account, *(int(b) + n - t
                                   for b, n, t in zip(base, now, then[account], strict=True))))
        return out

    return update


def usage_since(pubkey: str, day: str) -> Callable[[Rows], Rows] | None:
    """For a read of the asker's day (absorbed_msat, jobs) asked now: what brings it up to
    date when loaded (None: no batch is followed)."""
    changes = _CHANGES.get()
    if changes is None:
        return None
    then = changes.usage.get((pubkey, day), (0, 0))

    def update(rows: Rows) -> Rows:
        now = changes.usage.get((pubkey, day), (0, 0))
        if now == then:
            return rows
        absorbed, jobs = rows[0] if rows else (0, 0)
        return [(int(absorbed) + now[0] - then[0], int(jobs) + now[1] - then[1])]

    return update


def spent_since(day: str) -> Callable[[Rows], Rows] | None:
    """For a read of the pool's spending of ``day`` (spent_msat) asked now: what brings it up
    to date when loaded (None: no batch is followed)."""
    changes = _CHANGES.get()
    if changes is None:
        return None
    then = changes.spent.get(day, 0)

    def update(rows: Rows) -> Rows:
        now = changes.spent.get(day, 0)
        if now == then:
            return rows
        spent = int(rows[0][0]) if rows else 0
        return [(spent + now - then,)]

    return update
