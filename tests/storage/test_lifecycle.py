"""The lifecycle tables: every operation on a record in every state either makes the move its
table lists, or raises ``IllegalTransition`` and changes nothing (a repeat of an operation that
already ran returns its stored result and changes nothing either)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum

import pytest

from storage import (
    Database,
    IllegalTransition,
    JobState,
    Ledger,
    PayoutState,
    RefundState,
    Serve,
    TopupState,
)
from storage.lifecycle import (
    JOB_LIFECYCLE,
    PAYOUT_LIFECYCLE,
    REFUND_LIFECYCLE,
    REQUEST_LIFECYCLE,
    TOPUP_LIFECYCLE,
    JobOp,
    Lifecycle,
    PayoutOp,
    RefundOp,
    RequestOp,
    RequestState,
    TopupOp,
)
from tests.storage.conftest import LIMITS
from tests.storage.support import ManualClock, all_rows, assert_invariants

ESTIMATE = 200_000  # a partial job: the allowance (100 000) is the subsidy, the asker pays the rest
WORK = 100_000
ACTUAL = 150_000
STORED = {JobOp.ATTACH_INVOICE, JobOp.RESERVE_GRANT, JobOp.SETTLE, JobOp.FAIL}
"""Operations whose result is stored: repeated with the same arguments, they return it."""

TABLES: list[tuple[Lifecycle[StrEnum, StrEnum], type[StrEnum], type[StrEnum]]] = [
    (JOB_LIFECYCLE, JobState, JobOp),  # type: ignore[list-item]
    (REFUND_LIFECYCLE, RefundState, RefundOp),  # type: ignore[list-item]
    (PAYOUT_LIFECYCLE, PayoutState, PayoutOp),  # type: ignore[list-item]
    (TOPUP_LIFECYCLE, TopupState, TopupOp),  # type: ignore[list-item]
    (REQUEST_LIFECYCLE, RequestState, RequestOp),  # type: ignore[list-item]
]


@pytest.mark.parametrize(("table", "states", "ops"), TABLES, ids=lambda v: getattr(v, "name", ""))
def test_every_pair_is_listed_or_illegal(
        table: Lifecycle[StrEnum, StrEnum], states: type[StrEnum], ops: type[StrEnum]) -> None:
    for state in states:
        for op in ops:
            if table.allows(state, op):
                assert table.next(state, op, "x") in states
            else:
                with pytest.raises(IllegalTransition, match=f"is {state.value}"):
                    table.next(state, op, "x")


def test_terminal_states() -> None:
    def terminal(table: Lifecycle[StrEnum, StrEnum], states: type[StrEnum],
                 ops: type[StrEnum]) -> set[str]:
        return {s.value for s in states
                if all(table.next(s, o, "x") is s for o in ops if table.allows(s, o))}

    assert terminal(*TABLES[0]) == {"done", "failed", "expired", "cancelled"}
    assert terminal(*TABLES[1]) == {"paid", "credited"}
    assert terminal(*TABLES[2]) == {"paid", "failed"}
    assert terminal(*TABLES[3]) == {"paid"}
    assert terminal(*TABLES[4]) == {"closed", "dropped"}


# ------------------------------------------------------------------ jobs, through the ledger

async def job_in(ledger: Ledger, clock: ManualClock, state: JobState) -> tuple[str, set[JobOp]]:
    """A partial job (its own asker) brought to ``state``, and the operations that ran on it."""
    job = f"job-{state.value}"
    ran: set[JobOp] = set()
    d = await ledger.decide(job, f"pk-{state.value}", ESTIMATE)
    assert (d.serve, d.work_amount_msat) == (Serve.PARTIAL, WORK)
    if state is JobState.QUOTED:
        return job, ran
    if state is JobState.CANCELLED:
        await ledger.cancel(job)
        return job, {JobOp.CANCEL}
    await ledger.attach_invoice(job, f"hash-{job}", WORK, clock.now + 600)
    ran.add(JobOp.ATTACH_INVOICE)
    if state is JobState.EXPIRED:
        await ledger.expire_job(job)
        return job, ran | {JobOp.EXPIRE}
    if state is not JobState.INVOICED:
        assert (await ledger.confirm_payment(job, WORK, f"pay:{job}")).job_paid
        ran |= {JobOp.PAY, JobOp.RESERVE_GRANT}
    if state in (JobState.RUNNING, JobState.DONE, JobState.FAILED):
        await ledger.start(job)
        ran.add(JobOp.START)
    if state is JobState.DONE:
        await ledger.settle(job, ACTUAL)
        ran.add(JobOp.SETTLE)
    if state is JobState.FAILED:
        await ledger.fail(job, "boom")
        ran.add(JobOp.FAIL)
    assert (await ledger.job(job)).state is state
    return job, ran


def job_op(op: JobOp, job: str, clock: ManualClock) -> Callable[[Ledger], Awaitable[object]]:
    """The ledger operation that makes ``op``, with the arguments ``job_in`` used."""
    return {
        JobOp.ATTACH_INVOICE: lambda lg: lg.attach_invoice(job, f"hash-{job}", WORK,
                                                           clock.now + 600),
        JobOp.RESERVE_GRANT: lambda lg: lg.reserve_partial_grant(job),
        JobOp.START: lambda lg: lg.start(job),
        JobOp.SETTLE: lambda lg: lg.settle(job, ACTUAL),
        JobOp.FAIL: lambda lg: lg.fail(job, "boom"),
        JobOp.EXPIRE: lambda lg: lg.expire_job(job),
        JobOp.CANCEL: lambda lg: lg.cancel(job),
    }[op]


@pytest.mark.parametrize("state", list(JobState), ids=str)
@pytest.mark.parametrize("op", [o for o in JobOp if o is not JobOp.PAY], ids=str)
async def test_job_operations_follow_the_table(
        ledger: Ledger, db: Database, clock: ManualClock, state: JobState, op: JobOp) -> None:
    await ledger.credit_pool(10_000_000, "op:pool", source="operator")
    job, ran = await job_in(ledger, clock, state)
    before = await all_rows(db)
    run = job_op(op, job, clock)
    if JOB_LIFECYCLE.allows(state, op):
        await run(ledger)
        after = (await ledger.job(job)).state
        assert after is JOB_LIFECYCLE.next(state, op, job)
        if after is state and op not in (JobOp.RESERVE_GRANT,):
            assert await all_rows(db) == before  # a no-op writes nothing
    elif op in ran and op in STORED:
        await run(ledger)  # a repeat: the stored result
        assert await all_rows(db) == before
    else:
        with pytest.raises(IllegalTransition):
            await run(ledger)
        assert await all_rows(db) == before
    await assert_invariants(db, LIMITS)


@pytest.mark.parametrize("state", list(JobState), ids=str)
async def test_a_payment_moves_a_job_only_where_the_table_says(
        ledger: Ledger, db: Database, clock: ManualClock, state: JobState) -> None:
    """Paying is never refused (money that arrived is counted): where the table has no ``pay``,
    the job does not move (an unpaid one closes as expired) and all of it becomes balance."""
    await ledger.credit_pool(10_000_000, "op:pool", source="operator")
    job, _ = await job_in(ledger, clock, state)
    out = await ledger.confirm_payment(job, WORK, "pay:another")
    after = (await ledger.job(job)).state
    if JOB_LIFECYCLE.allows(state, JobOp.PAY):
        assert out.job_paid and after is JOB_LIFECYCLE.next(state, JobOp.PAY, job)
    else:
        assert not out.job_paid and out.credited_balance_msat == WORK
        closes = JOB_LIFECYCLE.allows(state, JobOp.EXPIRE)
        assert after is (JOB_LIFECYCLE.next(state, JobOp.EXPIRE, job) if closes else state)
    await assert_invariants(db, LIMITS)


async def test_free_and_session_jobs_take_no_invoice_and_need_no_start(
        ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await ledger.credit_pool(50_000, "zap:1")
    await ledger.credit_balance("bob", 500_000, "pay:topup", "topup")
    assert (await ledger.decide("f1", "alice", 10_000)).serve is Serve.FREE
    assert (await ledger.decide("s1", "bob", 200_000)).serve is Serve.SESSION
    for job in ("f1", "s1"):
        before = await all_rows(db)
        with pytest.raises(IllegalTransition):
            await ledger.attach_invoice(job, f"hash-{job}", 1_000, clock.now + 600)
        with pytest.raises(IllegalTransition):
            await ledger.cancel(job)
        assert (await ledger.start(job)).state is JobState.RUNNING  # already: no-op
        assert await all_rows(db) == before
    await assert_invariants(db, LIMITS)


# ------------------------------------------------------------------ refunds and payouts

async def refund_in(ledger: Ledger, clock: ManualClock, state: RefundState) -> str:
    """A gate job (its own asker) whose refund is in ``state``."""
    job = f"g-{state.value}"
    await ledger.decide(job, f"pk-{job}", 10_000)
    await ledger.attach_invoice(job, f"hash-{job}", 10_000, clock.now + 600)
    await ledger.confirm_payment(job, 10_000, f"pay:{job}")
    await ledger.start(job)
    await ledger.settle(job, 10_000 if state is RefundState.NONE else 4_000)
    if state is RefundState.CREDITED:
        await ledger.credit_refund_to_balance(job)
    if state in (RefundState.PAYING, RefundState.PAID):
        p = await ledger.begin_payout(job, "lnbc-dest", f"po:{job}")
        if state is RefundState.PAID:
            await ledger.confirm_payout(p.payout_id, "pre", 0)
    assert (await ledger.job(job)).refund_state is state
    return job


@pytest.mark.parametrize("state", list(RefundState), ids=str)
@pytest.mark.parametrize("op", [RefundOp.BEGIN_PAYOUT, RefundOp.CREDIT], ids=str)
async def test_refund_operations_follow_the_table(
        ledger: Ledger, db: Database, clock: ManualClock, state: RefundState,
        op: RefundOp) -> None:
    job = await refund_in(ledger, clock, state)
    before = await all_rows(db)
    run = (ledger.begin_payout(job, "lnbc-new", "po:new") if op is RefundOp.BEGIN_PAYOUT
           else ledger.credit_refund_to_balance(job))
    if REFUND_LIFECYCLE.allows(state, op):
        await run
        after = (await ledger.job(job)).refund_state
        assert after is REFUND_LIFECYCLE.next(state, op, job)
        if after is state:
            assert await all_rows(db) == before
    else:
        with pytest.raises(IllegalTransition):
            await run
        assert await all_rows(db) == before
    await assert_invariants(db, LIMITS)


@pytest.mark.parametrize("state", list(PayoutState), ids=str)
@pytest.mark.parametrize("op", list(PayoutOp), ids=str)
async def test_payout_operations_follow_the_table(
        ledger: Ledger, db: Database, clock: ManualClock, state: PayoutState,
        op: PayoutOp) -> None:
    job = await refund_in(ledger, clock, RefundState.PENDING)
    p = await ledger.begin_payout(job, "lnbc-dest", f"po:{job}")
    if state is PayoutState.PAID:
        await ledger.confirm_payout(p.payout_id, "pre", 0)
    elif state is PayoutState.FAILED:
        await ledger.fail_payout(p.payout_id, "no route")
    before = await all_rows(db)
    run = (ledger.confirm_payout(p.payout_id, "pre", 0) if op is PayoutOp.CONFIRM
           else ledger.fail_payout(p.payout_id, "no route"))
    if PAYOUT_LIFECYCLE.allows(state, op):
        after = await run
        assert after.state is PAYOUT_LIFECYCLE.next(state, op, "p")
        if after.state is state:
            assert await all_rows(db) == before
    else:
        with pytest.raises(IllegalTransition):
            await run
        assert await all_rows(db) == before
    await assert_invariants(db, LIMITS)


# ------------------------------------------------------------------ top-ups

@pytest.mark.parametrize("state", list(TopupState), ids=str)
@pytest.mark.parametrize("op", list(TopupOp), ids=str)
async def test_topup_operations_follow_the_table(
        ledger: Ledger, db: Database, clock: ManualClock, state: TopupState,
        op: TopupOp) -> None:
    await ledger.record_topup("alice", "t1", 5_000, clock.now + 600)
    if state is TopupState.PAID:
        await ledger.confirm_topup("t1", 5_000, "pay:t1")
    elif state is TopupState.EXPIRED:
        await ledger.expire_topup("t1")
    before = await all_rows(db)
    run = (ledger.confirm_topup("t1", 5_000, "pay:t1-again") if op is TopupOp.PAY
           else ledger.expire_topup("t1"))
    if TOPUP_LIFECYCLE.allows(state, op):
        await run
        after = (await ledger.topup("t1")).state
        assert after is TOPUP_LIFECYCLE.next(state, op, "t1")
        if after is state and op is TopupOp.EXPIRE:
            assert await all_rows(db) == before
    else:
        with pytest.raises(IllegalTransition):
            await run
        assert await all_rows(db) == before
    await assert_invariants(db, LIMITS)
