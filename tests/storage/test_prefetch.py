"""A batch whose operations' reads were asked ahead (PostgreSQL: ``storage.prefetch``) ends
exactly as the same operations run one at a time: the same results, the same rows.

The batches below put together what a read asked ahead could get wrong: decisions of one asker
(its day's usage), decisions that drain the pool (the pool's account), a daily pool cap (the
pool's day), a session's balance, a job decided, settled and decided again in one batch (its own
rows), a plain write among them. On SQLite (nothing is asked ahead) the same comparison holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from storage import Database, Decision, Intake, Ledger, Limits, NewRequest, Replica, Serve
from tests.storage.conftest import START
from tests.storage.support import ManualClock, all_rows, assert_invariants

Step = Callable[[Ledger], Awaitable[object]]

CAPPED = Limits(daily_free_msat=100_000, daily_free_jobs=5, pool_daily_cap_msat=130_000)
UNCAPPED = Limits(daily_free_msat=100_000, daily_free_jobs=5, pool_daily_cap_msat=None)


def _decide(job: str, pubkey: str, estimate: int, subsidised: bool = True) -> Step:
    return lambda ledger: ledger.decide(job, pubkey, estimate, subsidised=subsidised)


def _settle(job: str, actual: int) -> Step:
    return lambda ledger: ledger.settle(job, actual)


BEFORE: list[Step] = [
    lambda ledger: ledger.credit_pool(150_000, "zap-1"),
    lambda ledger: ledger.credit_balance("pk-f", 8_000, "topup-f"),
]
BATCH: list[Step] = [
    _decide("j1", "pk-a", 60_000),  # free
    _decide("j2", "pk-a", 60_000),  # pk-a's allowance has 40_000 left: partial
    _decide("j3", "pk-b", 60_000),  # the pool has 90_000 available: free (cap: 120_000 spent)
    _decide("j4", "pk-c", 60_000),  # the pool has 30_000 (cap: 10_000 left): partial
    _settle("j1", 30_000),  # the job decided in this batch; 30_000 back to the pool
    _decide("j5", "pk-d", 50_000),  # sees the settlement's release: free (cap: 40_000: partial)
    _decide("j1", "pk-a", 60_000),  # a repeat: the stored decision
    _decide("j6", "pk-f", 5_000, subsidised=False),  # a session: 5_000 of the 8_000 held
    _decide("j7", "pk-f", 5_000, subsidised=False),  # 3_000 left: gate
    _settle("j6", 4_000),
    lambda ledger: ledger.credit_pool(60_000, "zap-2"),  # a plain write
    _decide("j8", "pk-e", 60_000),  # after it: asked again, sees the credit (cap: partial)
    _settle("j3", 60_000),
]


async def _run(location: str, limits: Limits, before: list[Step], batch: list[Step],
               together: bool) -> tuple[list[object], Database]:
    """``before`` one by one, then ``batch`` as one batch (``together``) or one by one."""
    db = await Database.open(location)
    ledger = Ledger(db, limits, clock=ManualClock(START))
    for step in before:
        await step(ledger)
    if together:
        batches, replays = db.batches, db.replays
        results = list(await asyncio.gather(*(step(ledger) for step in batch)))
        assert (db.batches, db.replays) == (batches + 1, replays)  # one batch, one pass
    else:
        results = [await step(ledger) for step in batch]
    return results, db


async def _ledger_rows(db: Database) -> list[object]:
    """Every row but the migrations' (stamped with the time they ran)."""
    return [table for table in await all_rows(db)
            if isinstance(table, tuple) and table[0] != "schema_version"]


@pytest.mark.parametrize("limits", [UNCAPPED, CAPPED], ids=["uncapped", "capped"])
async def test_a_batch_asked_ahead_ends_as_its_operations_one_by_one(
        new_location: Callable[[], str], limits: Limits) -> None:
    together, db = await _run(new_location(), limits, BEFORE, BATCH, together=True)
    alone, serial_db = await _run(new_location(), limits, BEFORE, BATCH, together=False)
    try:
        assert together == alone
        assert await _ledger_rows(db) == await _ledger_rows(serial_db)
        await assert_invariants(db, limits)
    finally:
        await db.close()
        await serial_db.close()
    serves = [getattr(r, "serve", None) for r in alone]
    assert [s.value if s else None for s in serves] == (
        ["free", "partial", "free", "partial", "free", "free", "free", "session", "gate",
         "session", None, "free", "free"] if limits is UNCAPPED else
        ["free", "partial", "free", "partial", "free", "partial", "free", "session", "gate",
         "session", None, "partial", "free"])


async def _answers(location: str, together: bool) -> tuple[list[object], Database]:
    """Requests answered and settled (``Intake.settle_answer``, the agent's way) in one batch
    with decisions and a repeat, or one at a time."""
    db = await Database.open(location)
    clock = ManualClock(START)
    intake = Intake(db, clock=clock, replica=Replica(id="replica-1"))
    ledger = Ledger(db, UNCAPPED, clock=clock)
    await ledger.credit_pool(150_000, "zap-1")
    for rid in ("q1", "q2", "q3"):
        await intake.record(NewRequest(rid, "bob", "nip17", "?", f"w-{rid}", ("ws://a",)),
                            [f"e-{rid}"])
    for rid in ("q1", "q2"):
        await ledger.decide(rid, "bob", 30_000)
    steps: list[Callable[[], Awaitable[object]]] = [
        lambda: intake.settle_answer("q1", "one", 10_000),
        lambda: ledger.decide("q3", "bob", 50_000),  # bob's allowance after q1's release
        lambda: intake.settle_answer("q2", "two", 30_000),
        lambda: intake.settle_answer("q1", "one", 10_000),  # a repeat: the first settlement
        lambda: intake.settle_answer("q3", "three", 20_000),  # decided in this batch
    ]
    if together:
        batches, replays = db.batches, db.replays
        results = list(await asyncio.gather(*(step() for step in steps)))
        assert (db.batches, db.replays) == (batches + 1, replays)  # one batch, one pass
    else:
        results = [await step() for step in steps]
    return results, db


async def test_answers_settled_in_a_batch_asked_ahead_end_as_one_by_one(
        new_location: Callable[[], str]) -> None:
    together, db = await _answers(new_location(), together=True)
    alone, serial_db = await _answers(new_location(), together=False)
    try:
        assert together == alone
        assert await _ledger_rows(db) == await _ledger_rows(serial_db)
        await assert_invariants(db, UNCAPPED)
    finally:
        await db.close()
        await serial_db.close()
    assert isinstance(alone[1], Decision) and alone[1].serve is Serve.FREE


PAID_BEFORE: list[Step] = [
    lambda ledger: ledger.credit_pool(150_000, "zap-1"),
    _decide("q1", "pk-q", 150_000),  # partial: 100_000 of the pool, 50_000 invoiced
    lambda ledger: ledger.attach_invoice("q1", "hash-q1", 50_000, START + 600),
]
PAID_BATCH: list[Step] = [
    lambda ledger: ledger.confirm_payment("hash-q1", 50_000, "pay-q1"),  # paid, grant reserved
    lambda ledger: ledger.confirm_payment("q1", 50_000, "pay-q1b"),  # by its id: a duplicate
    lambda ledger: ledger.start("q1"),
    _decide("q2", "pk-r", 150_000),  # the pool has 50_000 left: partial
    lambda ledger: ledger.attach_invoice("q2", "hash-q2", 100_000, START + 600),
    lambda ledger: ledger.confirm_payment("hash-q2", 100_000, "pay-q2"),  # its grant: 50_000
    _settle("q1", 120_000),
    lambda ledger: ledger.start("q2"),
    _settle("q2", 150_000),
    lambda ledger: ledger.attach_invoice("q1", "hash-q1", 50_000, START + 600),  # a repeat
    _decide("q3", "pk-z", 20_000),  # the pool is all taken: gate
    lambda ledger: ledger.attach_invoice("q3", "hash-q3", 20_000, START + 600),
    lambda ledger: ledger.confirm_payment("q3", 20_000, "pay-q3"),  # by its id
]


async def test_paid_jobs_in_a_batch_asked_ahead_end_as_one_by_one(
        new_location: Callable[[], str]) -> None:
    """Payments found by an invoice's hash or by the job's id (a second payment of one job,
    by its id, in the batch that paid it by its hash: a duplicate), invoices, starts and
    settlements of jobs decided in the same batch."""
    together, db = await _run(new_location(), UNCAPPED, PAID_BEFORE, PAID_BATCH,
                              together=True)
    alone, serial_db = await _run(new_location(), UNCAPPED, PAID_BEFORE, PAID_BATCH,
                                  together=False)
    try:
        assert together == alone
        assert await _ledger_rows(db) == await _ledger_rows(serial_db)
        await assert_invariants(db, UNCAPPED)
    finally:
        await db.close()
        await serial_db.close()
    verdicts = [getattr(r, "result", None) for r in alone]
    assert [v.value if v else None for v in verdicts] == [
        "paid", "duplicate", None, None, None, "paid", None, None, None, None, None, None,
        "paid"]
    serves = [getattr(r, "serve", None) for r in alone]
    assert (serves[3], serves[10]) == (Serve.PARTIAL, Serve.GATE)
