"""Money safety of a batch whose operations' reads are asked ahead (PostgreSQL:
``storage.prefetch``), attacked where its bookkeeping could go wrong.

A read asked ahead was executed before the writes of the operations before it in the batch; the
counters (accounts, the asker's day, the pool's day) are brought up to date with what the batch
added since. Were that bookkeeping wrong, a batch could reserve from a pool or a balance an
earlier operation of the same batch already took, miss a daily limit, or write another journal.
Each scenario below runs its operations in one batch and one at a time, on a fresh database
each, and requires the same results, the same journal, accounts, jobs, operations and daily
counters (transfers named by their keys: a batch run again after a failure consumes ids), and
the ledger's invariants. Most of them also require the batch to pass once (a client that took
more than the pool holds would be refused by the database's CHECK and the batch run again one
operation at a time: the money would stay right, the bookkeeping would not be).

The last test draws batches at random (a seed each) over free, session, partial and gate jobs,
repeats, payments by hash and by id, plain writes among them and a clock that crosses midnight
within the batch, and compares PostgreSQL's batch with SQLite's operations one by one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from storage import Database, Decision, JobRecord, Ledger, LedgerError, Limits, Serve
from storage.sql import Connection
from tests.fixtures.postgres import PostgresCluster
from tests.storage.conftest import START
from tests.storage.support import assert_invariants

Step = Callable[[Ledger], Awaitable[object]]


class TickClock:
    """Each reading is ``tick`` seconds after the one before: every operation of a batch has
    its own time, so a batch may cross midnight (``START`` is one hour before it)."""

    def __init__(self, start: int, tick: int) -> None:
        self.now = start
        self.tick = tick

    def __call__(self) -> int:
        now = self.now
        self.now += self.tick
        return now


def _decide(job: str, pubkey: str, estimate: int, subsidised: bool = True) -> Step:
    return lambda ledger: ledger.decide(job, pubkey, estimate, subsidised=subsidised)


def _settle(job: str, actual: int) -> Step:
    return lambda ledger: ledger.settle(job, actual)


def _attach(job: str, amount: int) -> Step:
    return lambda ledger: ledger.attach_invoice(job, f"hash-{job}", amount, START + 5 * 86_400)


def _pay(ref: str, amount: int, key: str) -> Step:
    return lambda ledger: ledger.confirm_payment(ref, amount, key)


def _start(job: str) -> Step:
    return lambda ledger: ledger.start(job)


_SNAPSHOT = (
    "SELECT id, debits_posted, credits_posted, debits_pending, credits_pending FROM accounts",
    "SELECT t.key, t.kind, t.debit_account, t.credit_account, t.amount_msat, p.key, t.code,"
    " t.job_id, t.pubkey, t.day, t.created_at"
    " FROM transfers t LEFT JOIN transfers p ON p.id = t.pending_id",
    "SELECT j.id, j.pubkey, j.serve, j.state, j.estimate_msat, j.absorb_msat,"
    " j.work_amount_msat, j.reserved_msat, r.key, j.reserve_day, h.key, j.paid_msat,"
    " j.actual_msat, j.absorbed_msat, j.charged_msat, j.invoice_hash, j.invoice_msat,"
    " j.invoice_expires_at, j.refund_state, j.refund_msat, j.refund_ref, j.error,"
    " j.created_at, j.updated_at FROM jobs j LEFT JOIN transfers r ON r.id = j.reserve_transfer"
    " LEFT JOIN transfers h ON h.id = j.hold_transfer",
    "SELECT key, op, args, result FROM operations",
    "SELECT pubkey, day, absorbed_msat, jobs FROM daily_usage",
    "SELECT day, spent_msat FROM pool_daily",
)


async def _snapshot(db: Database) -> list[list[tuple[object, ...]]]:
    """The ledger's rows, the same on both engines: transfers named by their keys, not ids;
    each table sorted here (the engines' collations differ) by its unique first columns."""

    def read(conn: Connection) -> list[list[tuple[object, ...]]]:
        return [sorted((tuple(row) for row in conn.execute(sql).fetchall()),
                       key=lambda row: (str(row[0]), str(row[1])))
                for sql in _SNAPSHOT]

    return await db.read(read)


def _shown(value: object) -> object:
    """A result as compared: an error by its type and message, a job without its transfers'
    ids (a batch run again after a failure consumes ids on PostgreSQL; the snapshot compares
    the transfers by their keys)."""
    if isinstance(value, BaseException):
        return (type(value).__name__, str(value))
    if isinstance(value, JobRecord):
        return dataclasses.replace(value, reserve_transfer=None, hold_transfer=None)
    return value


@dataclasses.dataclass
class Run:
    results: list[object]
    snapshot: list[list[tuple[object, ...]]]
    passes: int  # the batch together: 1, or 2 when it was run again one by one (alone: 0)


async def _run(location: str, limits: Limits, before: list[Step], batch: list[Step], *,
               together: bool, tick: int = 0) -> Run:
    db = await Database.open(location)
    try:
        ledger = Ledger(db, limits, clock=TickClock(START, tick))
        for step in before:
            await step(ledger)
        batches, replays = db.batches, db.replays
        if together:
            raw = list(await asyncio.gather(*(step(ledger) for step in batch),
                                            return_exceptions=True))
            assert db.batches == batches + 1  # the whole batch in one transaction
        else:
            raw = []
            for step in batch:
                try:
                    raw.append(await step(ledger))
                except LedgerError as exc:
                    raw.append(exc)
        await assert_invariants(db, limits)
        passes = 1 + db.replays - replays if together else 0
        return Run([_shown(r) for r in raw], await _snapshot(db), passes)
    finally:
        await db.close()


async def _compare(new_location: Callable[[], str], limits: Limits, before: list[Step],
                   batch: list[Step], tick: int = 0) -> Run:
    """The batch together and one by one: the same results and rows. Returns the batch's."""
    together = await _run(new_location(), limits, before, batch, together=True, tick=tick)
    alone = await _run(new_location(), limits, before, batch, together=False, tick=tick)
    assert together.results == alone.results
    assert together.snapshot == alone.snapshot
    return together


def _serves(run: Run) -> list[str | None]:
    """Each decision's serve (None: not a decision)."""
    return [str(r.serve) if isinstance(r, Decision) else None for r in run.results]


# ---------------------------------------------------------------- the pool drained in a batch

async def test_free_decisions_never_take_more_than_the_pool_holds(
        new_location: Callable[[], str]) -> None:
    """Askers, each within their allowance, against a pool with 90_000 available: three are
    free, the next ones are offered what is left (partial: nothing reserved) until one takes
    it, then nothing (gate); a settlement gives some back, which is shared the same way."""
    limits = Limits(daily_free_msat=100_000, daily_free_jobs=5)
    before: list[Step] = [lambda ledger: ledger.credit_pool(100_000, "zap-1"),
                          _decide("r0", "pk-r", 10_000)]
    batch = [_decide(f"j{i}", f"pk-{i}", 25_000) for i in range(4)] + [
        _decide("j4", "pk-4", 15_001),  # 15_000 left: partial (it reserves nothing)
        _decide("j5", "pk-5", 15_000),  # free: nothing left
        _decide("j6", "pk-6", 1),  # gate
        _settle("r0", 4_000),  # 6_000 back to the pool
        _decide("j7", "pk-7", 6_001),  # partial: 6_000
        _decide("j8", "pk-8", 6_000),  # free
        _decide("j9", "pk-9", 1),  # gate
    ]
    run = await _compare(new_location, limits, before, batch)
    assert run.passes == 1
    assert _serves(run) == ["free", "free", "free", "partial", "partial", "free", "gate", None,
                            "partial", "free", "gate"]
    assert [getattr(r, "absorb_msat", None) for r in run.results][3:5] == [15_000, 15_000]


async def test_a_partial_grant_sees_the_pool_an_earlier_decision_took(
        new_location: Callable[[], str]) -> None:
    """Two partial jobs invoiced before; in one batch the first is paid (its grant reserves
    100_000 of the pool's 150_000), a decision takes what is left but 10_000, the second
    payment's grant no longer fits (terms changed: refunded), a decision after it takes the
    rest, and one more gets nothing."""
    limits = Limits(daily_free_msat=100_000, daily_free_jobs=5)
    before: list[Step] = [
        lambda ledger: ledger.credit_pool(150_000, "zap-1"),
        _decide("p1", "pk-c", 130_500),  # partial: 100_000 of the pool, 30_500 to pay
        _decide("p2", "pk-d", 150_000),  # partial: 100_000 of the pool, 50_000 to pay
        _attach("p1", 31_000),
        _attach("p2", 50_000),
    ]
    batch = [
        _pay("hash-p1", 31_000, "pay-p1"),  # the grant: the pool keeps 50_000 available
        _decide("n1", "pk-e", 40_000),  # free: 10_000 left
        _decide("n2", "pk-f", 60_000),  # partial: 10_000
        _pay("p2", 50_000, "pay-p2"),  # by its id: 100_000 no longer there
        _decide("n3", "pk-g", 10_000),  # free: the last 10_000
        _decide("n4", "pk-h", 1_000),  # gate
    ]
    run = await _compare(new_location, limits, before, batch)
    assert run.passes == 1
    assert [str(getattr(r, "result", "")) for r in run.results][0::3] == ["paid",
                                                                          "terms_changed"]
    assert _serves(run) == [None, "free", "partial", None, "free", "gate"]


# ---------------------------------------------------------------- the asker's day and the pool's

async def test_a_release_in_the_batch_reopens_the_askers_allowance_and_jobs(
        new_location: Callable[[], str]) -> None:
    """An asker at the edge of both daily limits: 2 subsidised jobs a day, 100_000 msat. In
    one batch one job is settled for less (40_000 back to the day) and the other voided
    (actual 0: its job no longer counts); the decisions after them see exactly that."""
    limits = Limits(daily_free_msat=100_000, daily_free_jobs=2)
    before: list[Step] = [
        lambda ledger: ledger.credit_pool(500_000, "zap-1"),
        _decide("a1", "pk-a", 60_000),
        _decide("a2", "pk-a", 40_000),
    ]
    batch = [
        _decide("a3", "pk-a", 1_000),  # the jobs limit: gate
        _settle("a1", 20_000),  # 40_000 back to pk-a's day
        _decide("a4", "pk-a", 40_001),  # still the jobs limit: gate
        _settle("a2", 0),  # voided: pk-a's day counts 1 job, 20_000 msat
        _decide("a5", "pk-a", 80_001),  # allowance 80_000: partial
        _decide("a6", "pk-a", 80_000),  # the second job of the day again: free
        _decide("a7", "pk-a", 1),  # jobs limit again: gate
    ]
    run = await _compare(new_location, limits, before, batch)
    assert run.passes == 1
    assert _serves(run) == ["gate", None, "gate", None, "partial", "free", "gate"]


async def test_the_pools_daily_cap_at_its_edge(new_location: Callable[[], str]) -> None:
    """A pool cap of 100_000 a day with 90_000 spent: a settlement of another asker gives
    30_000 back to the day, decisions of several askers then share exactly what the cap
    leaves."""
    limits = Limits(daily_free_msat=100_000, daily_free_jobs=5, pool_daily_cap_msat=100_000)
    before: list[Step] = [
        lambda ledger: ledger.credit_pool(500_000, "zap-1"),
        _decide("c1", "pk-a", 50_000),
        _decide("c2", "pk-b", 40_000),
    ]
    batch = [
        _decide("d1", "pk-c", 10_001),  # the cap leaves 10_000: partial
        _decide("d2", "pk-d", 10_000),  # free: the cap is reached
        _settle("c1", 20_000),  # 30_000 back to the day
        _decide("d3", "pk-e", 30_001),  # partial, 30_000
        _decide("d4", "pk-a", 29_999),  # free (pk-a's own day has 80_000 left)
        _decide("d5", "pk-f", 2),  # 1 left: partial
        _settle("c2", 40_000),
        _decide("d6", "pk-g", 1),  # free: the cap is reached
        _decide("d7", "pk-h", 1),  # gate
    ]
    run = await _compare(new_location, limits, before, batch)
    assert run.passes == 1
    assert _serves(run) == ["partial", "free", None, "partial", "free", "partial", None,
                            "free", "gate"]


async def test_a_batch_across_midnight_counts_each_day_apart(
        new_location: Callable[[], str]) -> None:
    """Every operation a quarter of an hour after the one before, from 23:00: the batch's
    decisions and settlements fall on two days; a settlement corrects the day its job was
    reserved on, a decision reads the day it is made on."""
    limits = Limits(daily_free_msat=100_000, daily_free_jobs=3, pool_daily_cap_msat=150_000)
    before: list[Step] = [
        lambda ledger: ledger.credit_pool(400_000, "zap-1"),
        _decide("y1", "pk-a", 90_000),  # 23:15, yesterday
    ]
    batch = [
        _decide("y2", "pk-a", 20_000),  # 23:30: allowance 10_000: partial
        _decide("y3", "pk-b", 70_000),  # 23:45: the cap leaves 60_000: partial
        _settle("y1", 10_000),  # 00:00, today: yesterday's day gets 80_000 back
        _decide("t1", "pk-a", 100_000),  # today: a fresh allowance: free
        _decide("t2", "pk-b", 60_000),  # today's cap leaves 50_000: partial
        _settle("t1", 30_000),  # 70_000 back to today
        _decide("t3", "pk-b", 70_000),  # today's cap leaves 120_000, pk-b's day 100_000: free
        _decide("t4", "pk-a", 70_001),  # pk-a's day has 70_000: partial
    ]
    run = await _compare(new_location, limits, before, batch, tick=15 * 60)
    assert run.passes == 1
    assert _serves(run) == ["partial", "partial", None, "free", "partial", None, "free",
                            "partial"]


# ---------------------------------------------------------------- balances

async def test_a_balance_credited_in_the_batch_pays_a_session_in_it(
        new_location: Callable[[], str]) -> None:
    """An overpayment and a settlement's sub-sat rest credit the asker's balance inside the
    batch; the sessions after them use exactly that balance, and no more."""
    limits = Limits(daily_free_msat=100_000, daily_free_jobs=5)
    before: list[Step] = [
        _decide("g1", "pk-e", 20_700, subsidised=False),  # gate: 21_000 to pay
        _attach("g1", 21_000),
    ]
    batch = [
        _decide("s0", "pk-e", 1, subsidised=False),  # no balance: gate
        _pay("hash-g1", 30_000, "pay-g1"),  # overpaid: 9_000 to pk-e's balance
        _decide("s1", "pk-e", 5_000, subsidised=False),  # session: 4_000 left
        _start("g1"),
        _settle("g1", 20_000),  # 1_000 refunded (a whole sat): no rest
        _decide("s2", "pk-e", 4_001, subsidised=False),  # gate
        _settle("s1", 2_500),  # 2_500 of the hold back
        _decide("s3", "pk-e", 6_500, subsidised=False),  # session: the whole balance
        _decide("s4", "pk-e", 1, subsidised=False),  # gate
    ]
    run = await _compare(new_location, limits, before, batch)
    assert run.passes == 1
    assert _serves(run) == ["gate", None, "session", None, None, "gate", None, "session",
                            "gate"]


async def test_a_large_batch_shares_the_pool_as_one_by_one(
        new_location: Callable[[], str]) -> None:
    """A hundred and twenty operations in one batch (its writes go out in several chunks):
    decisions of twelve askers up to their daily limits and the pool's daily cap, settlements
    giving some back."""
    limits = Limits(daily_free_msat=50_000, daily_free_jobs=4, pool_daily_cap_msat=250_000)
    rng = random.Random(7)
    before: list[Step] = [lambda ledger: ledger.credit_pool(350_000, "zap-1")]
    before += [_decide(f"b{i}", f"pk-{i % 12}", 9_000) for i in range(12)]
    batch: list[Step] = []
    for i in range(108):
        batch.append(_decide(f"j{i}", f"pk-{rng.randrange(12)}", rng.choice((3_000, 9_000,
                                                                             21_000))))
    for i in range(12):
        batch.insert(rng.randrange(len(batch)), _settle(f"b{i}", rng.choice((0, 4_500))))
    run = await _compare(new_location, limits, before, batch)
    assert run.passes == 1
    serves = _serves(run)
    assert {"free", "partial", "gate"} <= set(serves)


# ---------------------------------------------------------------- repeats and failures

async def test_repeats_next_to_their_originals(new_location: Callable[[], str]) -> None:
    """The same decision, payment (by hash, then by id under the same key) and settlement twice
    in one batch, each repeat right after its original: every repeat returns the original and
    moves nothing."""
    limits = Limits(daily_free_msat=100_000, daily_free_jobs=5)
    before: list[Step] = [
        lambda ledger: ledger.credit_pool(100_000, "zap-1"),
        _decide("p1", "pk-c", 130_500),
        _attach("p1", 31_000),
    ]
    batch = [
        _decide("j1", "pk-a", 60_000),
        _decide("j1", "pk-a", 60_000),
        _pay("hash-p1", 31_000, "pay-p1"),
        _pay("hash-p1", 31_000, "pay-p1"),
        _pay("hash-p1", 31_000, "pay-p1b"),  # another key: a duplicate payment, to balance
        _settle("j1", 10_000),
        _settle("j1", 10_000),
        _decide("j2", "pk-b", 50_000),  # the pool: 100_000 - 40_000 (p1) - 10_000 (j1)
        _decide("j2", "pk-b", 50_000),
    ]
    run = await _compare(new_location, limits, before, batch)
    assert run.passes == 1
    assert run.results[0] == run.results[1] and run.results[2] == run.results[3]
    assert run.results[5] == run.results[6] and run.results[7] == run.results[8]
    assert str(getattr(run.results[4], "result", "")) == "duplicate"
    assert _serves(run)[7] == "free"


async def test_a_failure_in_the_batch_runs_it_again_one_by_one(
        new_location: Callable[[], str]) -> None:
    """Operations that fail (a settlement above the estimate, a repeat with other terms, a job
    settled before it is decided) among decisions that drain the pool: the batch is run again
    one operation at a time and ends as they would one by one."""
    limits = Limits(daily_free_msat=100_000, daily_free_jobs=5)
    before: list[Step] = [lambda ledger: ledger.credit_pool(90_000, "zap-1")]
    batch = [
        _decide("j1", "pk-a", 40_000),
        _settle("j2", 1),  # not decided yet
        _decide("j2", "pk-b", 40_000),
        _settle("j1", 40_001),  # above the estimate
        _decide("j1", "pk-a", 40_001),  # the same job with other terms
        _settle("j1", 20_000),
        _decide("j3", "pk-c", 30_000),  # the pool: 90_000 - 40_000 - 20_000: free
        _decide("j4", "pk-d", 1),  # gate
    ]
    run = await _compare(new_location, limits, before, batch)
    assert run.passes == 2
    assert [r[0] if isinstance(r, tuple) else None for r in run.results] == [
        None, "UnknownJob", None, "InvalidAmount", "IdempotencyConflict", None, None, None]
    assert _serves(run)[6:] == ["free", "gate"]


def _refused(conn: Connection) -> None:
    """A write the database refuses (the pool below zero: its CHECK), found out only when a
    later statement's result is waited for (PostgreSQL's pipeline)."""
    conn.execute("UPDATE accounts SET debits_posted = debits_posted + 1000000000"
                 " WHERE id = 'pool'")


async def test_a_statement_refused_mid_batch_runs_it_again_one_by_one(
        new_location: Callable[[], str]) -> None:
    """Decisions asked ahead, then a write the database refuses, then more decisions: every
    caller but the refused one gets what one by one gives; the refused one a
    ``StorageFailure``, and nothing of it stays."""
    limits = Limits(daily_free_msat=100_000, daily_free_jobs=5)
    before: list[Step] = [lambda ledger: ledger.credit_pool(70_000, "zap-1")]
    batch = [
        _decide("j1", "pk-a", 40_000),
        _decide("j2", "pk-b", 40_000),  # partial: 30_000
        lambda ledger: ledger.db.write(_refused),
        _decide("j3", "pk-c", 30_000),  # free
        _decide("j4", "pk-d", 1),  # gate
    ]
    run = await _compare(new_location, limits, before, batch)
    assert run.passes == 2
    assert isinstance(run.results[2], tuple) and run.results[2][0] == "StorageFailure"
    assert _serves(run) == ["free", "partial", None, "free", "gate"]


async def test_two_databases_batches_never_take_more_than_the_pool(db_location: str) -> None:
    """Two ``Database``s on one ledger (as two processes): their batches, at once, each ask
    their reads ahead only once the write lock is theirs, so together they reserve exactly
    what the pool holds."""
    limits = Limits(daily_free_msat=100_000, daily_free_jobs=5)
    first, second = await Database.open(db_location), await Database.open(db_location)
    try:
        ledgers = [Ledger(db, limits, clock=TickClock(START, 0)) for db in (first, second)]
        await ledgers[0].credit_pool(100_000, "zap-1")
        decisions = await asyncio.gather(*(
            ledgers[i % 2].decide(f"j{i}", f"pk-{i}", 7_000) for i in range(30)))
        assert sum(d.serve is Serve.FREE for d in decisions) == 14  # 98_000 of 100_000
        assert first.replays == second.replays == 0
        await assert_invariants(first, limits)
    finally:
        await first.close()
        await second.close()


# ---------------------------------------------------------------- random batches, both engines

PKS = ("pk-a", "pk-a", "pk-b", "pk-c", "pk-s", "pk-s", "pk-t")  # some more often: their limits
RANDOM_LIMITS = Limits(daily_free_msat=100_000, daily_free_jobs=3, pool_daily_cap_msat=220_000)
RANDOM_BEFORE: list[Step] = [
    lambda ledger: ledger.credit_pool(300_000, "zap-0"),
    lambda ledger: ledger.credit_balance("pk-s", 25_500, "top-s"),
    lambda ledger: ledger.credit_balance("pk-t", 7_250, "top-t"),
    _decide("r1", "pk-a", 40_000),  # free
    _decide("r2", "pk-b", 35_000),  # free
    _decide("s1", "pk-s", 9_000, subsidised=False),  # session
    _decide("p1", "pk-c", 130_500),  # partial: 100_000 of the pool, 30_500 to pay
    _decide("p2", "pk-t", 160_000),  # partial: 100_000 of the pool, 60_000 to pay
    _decide("g1", "pk-e", 20_700, subsidised=False),  # gate: 20_700 to pay
    _attach("p1", 31_000),
    _attach("p2", 60_000),
    _attach("g1", 21_000),
]
INVOICES = {"p1": (31_000, 130_500), "p2": (60_000, 160_000), "g1": (21_000, 20_700)}


def _random_batch(seed: int) -> list[Step]:
    """Chains of operations (each job's in their order), interleaved at random."""
    rng = random.Random(seed)
    chains: list[list[Step]] = []
    for n in range(rng.randint(3, 7)):
        # 110_000: more than any allowance, so a session for a balance that covers the rest
        estimate = rng.choice((5_000, 30_000, 60_000, 99_999, 110_000))
        chain = [_decide(f"n{n}", rng.choice(PKS), estimate, rng.random() < 0.75)]
        if rng.random() < 0.15:  # fails if the job was not free nor a session
            chain.append(_settle(f"n{n}", rng.choice((0, estimate // 2, estimate))))
        chains.append(chain)
    for job, estimate in (("r1", 40_000), ("r2", 35_000), ("s1", 9_000)):
        if rng.random() < 0.7:
            chains.append([_settle(job, rng.choice((0, estimate // 3, estimate)))])
    for job, (invoice, estimate) in INVOICES.items():
        if rng.random() < 0.2:
            continue
        amount = invoice + rng.choice((0, 0, 0, 0, 0, 1_500, -1_000))  # over, under
        ref = rng.choice((job, f"hash-{job}"))
        chain = [_pay(ref, amount, f"pay-{job}")]
        if rng.random() < 0.3:  # a second payment: a repeat, or a duplicate under a new key
            chain.append(rng.choice((_pay(ref, amount, f"pay-{job}"),
                                     _pay(rng.choice((job, f"hash-{job}")), amount,
                                          f"pay-{job}-again"))))
        if rng.random() < 0.7 and amount >= invoice:
            chain += [_start(job), _settle(job, rng.choice((estimate, estimate // 2)))]
        chains.append(chain)
    if rng.random() < 0.4:  # a gate job decided, invoiced and paid in the batch
        chains.append([_decide("gx", "pk-g", 12_300, subsidised=False), _attach("gx", 13_000),
                       _pay("hash-gx", 13_000, "pay-gx"), _start("gx"), _settle("gx", 12_300)])
    if rng.random() < 0.25:  # a plain write
        chains.append([rng.choice((
            lambda ledger: ledger.credit_pool(15_000, "zap-1"),
            lambda ledger: ledger.credit_balance("pk-c", 45_000, "top-c"),
            lambda ledger: ledger.reserve_partial_grant("p2"),
        ))])
    if rng.random() < 0.15:  # a failure: the batch runs again one by one
        chains.append([_settle("r1", 40_001)])
    steps: list[Step] = []
    while chains:
        chain = rng.choice(chains)
        steps.append(chain.pop(0))
        if rng.random() < 0.1:
            steps.append(steps[rng.randrange(len(steps))])  # a repeat of any step so far
        if not chain:
            chains.remove(chain)
    return steps


SEEDS = range(24)


async def test_random_batches_on_postgresql_end_as_one_by_one_on_sqlite(
        postgres_cluster: PostgresCluster, tmp_path: Path) -> None:
    """Each random batch on PostgreSQL (its reads asked ahead) ends as its operations one by
    one on SQLite and on PostgreSQL: the same results and rows. It passes once unless one of
    its operations fails (a client that took what was no longer there would be refused by the
    database and run again)."""
    clean = 0
    for seed in SEEDS:
        batch = _random_batch(seed)
        together = await _run(postgres_cluster.new_schema(), RANDOM_LIMITS, RANDOM_BEFORE, batch,
                              together=True, tick=240)
        on_sqlite = await _run(str(tmp_path / f"ledger{seed}.sqlite3"), RANDOM_LIMITS,
                               RANDOM_BEFORE, batch, together=False, tick=240)
        alone = await _run(postgres_cluster.new_schema(), RANDOM_LIMITS, RANDOM_BEFORE, batch,
                           together=False, tick=240)
        assert together.results == on_sqlite.results == alone.results, f"seed {seed}"
        assert together.snapshot == on_sqlite.snapshot == alone.snapshot, f"seed {seed}"
        failed = any(isinstance(r, tuple) for r in together.results)  # an error, as shown
        assert together.passes == (2 if failed else 1), f"seed {seed}"
        clean += not failed
    assert clean >= 8  # the read-ahead path, not only the replay, was exercised


@pytest.mark.parametrize("seed", [100, 101])
async def test_random_batches_end_as_one_by_one(new_location: Callable[[], str],
                                                seed: int) -> None:
    """The same on each engine alone (SQLite: nothing asked ahead; it must be unchanged)."""
    await _compare(new_location, RANDOM_LIMITS, RANDOM_BEFORE, _random_batch(seed), tick=240)
