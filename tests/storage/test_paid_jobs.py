"""Partial and gate jobs: advisory decisions, payment confirmation, settlement, refunds."""

from __future__ import annotations

import pytest

from storage import (
    Database,
    IllegalTransition,
    InvalidInput,
    JobState,
    Ledger,
    PaymentVerdict,
    RefundState,
    Serve,
    TopupResult,
)
from tests.storage.conftest import LIMITS
from tests.storage.support import ManualClock, assert_invariants


async def _partial(ledger: Ledger, clock: ManualClock, job: str = "j1",
                   pubkey: str = "alice") -> None:
    """A partial job: pool 30 000, estimate 50 000 → absorb 30 000, work amount 20 000."""
    await ledger.credit_pool(30_000, f"zap:{job}")
    d = await ledger.decide(job, pubkey, 50_000)
    assert (d.serve, d.absorb_msat, d.work_amount_msat) == (Serve.PARTIAL, 30_000, 20_000)
    await ledger.attach_invoice(job, f"hash-{job}", 20_000, clock.now + 600)


async def test_partial_decision_is_advisory(ledger: Ledger, db: Database,
                                            clock: ManualClock) -> None:
    await _partial(ledger, clock)
    pool = await ledger.pool_status()
    assert (pool.available_msat, pool.reserved_msat) == (30_000, 0)
    assert (await ledger.allowance("alice")).free_msat_left == 100_000
    # an abandoned quote: another asker can still use the whole pool
    assert (await ledger.decide("other", "bob", 30_000)).serve is Serve.FREE
    await assert_invariants(db, LIMITS)


async def test_partial_payment_reserves_the_grant(ledger: Ledger, db: Database,
                                                  clock: ManualClock) -> None:
    await _partial(ledger, clock)
    out = await ledger.confirm_payment("hash-j1", 20_000, "pay:hash-j1")
    assert (out.result, out.job_paid, out.credited_balance_msat) == (PaymentVerdict.PAID, True, 0)
    pool = await ledger.pool_status()
    assert (pool.available_msat, pool.reserved_msat) == (0, 30_000)
    assert (await ledger.allowance("alice")).free_msat_left == 70_000
    grant = await ledger.reserve_partial_grant("j1")  # already done: the same result
    assert (grant.granted, grant.absorb_msat) == (True, 30_000)
    assert (await ledger.job("j1")).state == "paid"
    await assert_invariants(db, LIMITS)


async def test_pool_drained_before_payment_refunds_the_whole_payment(
        ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await _partial(ledger, clock)
    assert (await ledger.decide("thief", "mallory", 30_000)).serve is Serve.FREE
    out = await ledger.confirm_payment("hash-j1", 20_000, "pay:hash-j1")
    assert (out.result, out.job_paid, out.refund_msat) == (
        PaymentVerdict.TERMS_CHANGED, False, 20_000)
    job = await ledger.job("j1")
    assert (job.state, job.refund_state, job.refund_msat) == ("failed", RefundState.PENDING, 20_000)
    assert (await ledger.allowance("alice")).free_msat_left == 100_000
    balances = await assert_invariants(db, LIMITS)
    assert balances["refunds"] == 20_000
    assert balances["revenue"] == 0


async def test_allowance_used_before_payment_refunds(ledger: Ledger, db: Database,
                                                     clock: ManualClock) -> None:
    await _partial(ledger, clock)
    await ledger.credit_pool(1_000_000, "op:more", source="operator")
    await ledger.decide("other", "alice", 90_000)  # alice's own allowance: 10 000 left < 30 000
    out = await ledger.confirm_payment("hash-j1", 20_000, "pay:hash-j1")
    assert out.result is PaymentVerdict.TERMS_CHANGED
    await assert_invariants(db, LIMITS)


@pytest.mark.parametrize(
    ("actual", "charge", "absorbed", "refund"),
    [
        (50_000, 20_000, 30_000, 0),       # the whole estimate
        (40_000, 10_000, 30_000, 10_000),  # cheaper: the user pays less
        (30_000, 0, 30_000, 20_000),       # the pool covers it all
        (10_000, 0, 10_000, 20_000),       # the pool keeps only the actual
        (0, 0, 0, 20_000),
    ],
)
async def test_partial_settlement_math(ledger: Ledger, db: Database, clock: ManualClock,
                                       actual: int, charge: int, absorbed: int,
                                       refund: int) -> None:
    await _partial(ledger, clock)
    await ledger.confirm_payment("hash-j1", 20_000, "pay:hash-j1")
    await ledger.start("j1")
    s = await ledger.settle("j1", actual)
    assert (s.charged_msat, s.absorbed_msat, s.refund_msat) == (charge, absorbed, refund)
    assert s.released_msat == 30_000 - absorbed
    assert charge + refund == 20_000
    balances = await assert_invariants(db, LIMITS)
    assert balances["revenue"] == charge
    assert balances["subsidy"] == absorbed
    assert balances["pool"] == 30_000 - absorbed
    assert balances["refunds"] == refund
    assert (await ledger.allowance("alice")).free_msat_left == 100_000 - absorbed
    job = await ledger.job("j1")
    assert job.refund_state is (RefundState.PENDING if refund else RefundState.NONE)


async def test_partial_work_failure_refunds_all_and_releases(
        ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await _partial(ledger, clock)
    await ledger.confirm_payment("hash-j1", 20_000, "pay:hash-j1")
    await ledger.start("j1")
    f = await ledger.fail("j1", "backend timeout")
    assert (f.released_msat, f.refund_msat) == (30_000, 20_000)
    assert (await ledger.pool_status()).available_msat == 30_000
    assert (await ledger.allowance("alice")).free_jobs_left == 5
    balances = await assert_invariants(db, LIMITS)
    assert balances["refunds"] == 20_000


async def test_gate_settlement_refunds_the_difference(ledger: Ledger, db: Database,
                                                      clock: ManualClock) -> None:
    d = await ledger.decide("g1", "alice", 10_000)
    assert d.serve is Serve.GATE
    await ledger.attach_invoice("g1", "hash-g1", 10_000, clock.now + 600)
    assert (await ledger.confirm_payment("g1", 10_000, "pay:hash-g1")).job_paid
    with pytest.raises(IllegalTransition):  # not started
        await ledger.settle("g1", 7_500)
    assert (await ledger.start("g1")).state == "running"
    assert (await ledger.start("g1")).state == "running"  # a repeat: no-op
    s = await ledger.settle("g1", 7_500)
    # 2 500 msat come back: 2 sats a pending refund, the 500 msat rest balance at once
    assert (s.charged_msat, s.refund_msat, s.credited_balance_msat, s.absorbed_msat) == (
        7_500, 2_000, 500, 0)
    balances = await assert_invariants(db, LIMITS)
    assert (balances["revenue"], balances["refunds"], balances["escrow"]) == (7_500, 2_000, 0)
    assert balances["balance:alice"] == 500
    exact = await ledger.decide("g2", "alice", 10_000)
    await ledger.attach_invoice("g2", "hash-g2", exact.work_amount_msat, clock.now + 600)
    await ledger.confirm_payment("hash-g2", 10_000, "pay:hash-g2")
    await ledger.start("g2")
    assert (await ledger.settle("g2", 10_000)).refund_msat == 0
    assert (await ledger.job("g2")).refund_state is RefundState.NONE
    await assert_invariants(db, LIMITS)


async def test_late_payment_becomes_balance(ledger: Ledger, db: Database,
                                            clock: ManualClock) -> None:
    await ledger.decide("g1", "alice", 10_000)
    await ledger.attach_invoice("g1", "hash-g1", 10_000, clock.now + 600)
    clock.advance(601)
    out = await ledger.confirm_payment("hash-g1", 10_000, "pay:hash-g1")
    assert (out.result, out.job_paid, out.credited_balance_msat) == (
        PaymentVerdict.LATE, False, 10_000)
    assert (await ledger.job("g1")).state == "expired"
    assert (await ledger.balance("alice")).available_msat == 10_000
    balances = await assert_invariants(db, LIMITS)
    assert (balances["escrow"], balances["revenue"]) == (0, 0)


async def test_payment_for_an_expired_job_becomes_balance(ledger: Ledger, db: Database,
                                                          clock: ManualClock) -> None:
    await ledger.decide("g1", "alice", 10_000)
    await ledger.attach_invoice("g1", "hash-g1", 10_000, clock.now + 600)
    await ledger.expire_job("g1")
    out = await ledger.confirm_payment("g1", 10_000, "zap:abc")
    assert out.result is PaymentVerdict.LATE
    await assert_invariants(db, LIMITS)


async def test_paid_twice_and_overpaid_and_underpaid(ledger: Ledger, db: Database,
                                                     clock: ManualClock) -> None:
    await ledger.decide("g1", "alice", 10_000)
    await ledger.attach_invoice("g1", "hash-g1", 10_000, clock.now + 600)
    under = await ledger.confirm_payment("g1", 4_000, "zap:under")
    assert (under.result, under.job_paid, under.credited_balance_msat) == (
        PaymentVerdict.UNDERPAID, False, 4_000)
    over = await ledger.confirm_payment("hash-g1", 12_000, "pay:hash-g1")
    assert (over.result, over.job_paid, over.credited_balance_msat) == (
        PaymentVerdict.OVERPAID, True, 2_000)
    again = await ledger.confirm_payment("g1", 10_000, "zap:second")
    assert (again.result, again.job_paid, again.credited_balance_msat) == (
        PaymentVerdict.DUPLICATE, False, 10_000)
    # the same payment delivered again (another relay, a restart): counted once
    assert await ledger.confirm_payment("hash-g1", 12_000, "pay:hash-g1") == over
    assert (await ledger.balance("alice")).available_msat == 16_000
    balances = await assert_invariants(db, LIMITS)
    assert (balances["escrow"], balances["lightning_in"]) == (10_000, -26_000)


async def test_expiry_moves_no_money(ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await _partial(ledger, clock)
    before = await assert_invariants(db, LIMITS)
    job = await ledger.expire_job("j1")
    assert job.state == "expired"
    assert await ledger.expire_job("j1") == job  # repeat: no-op
    assert await assert_invariants(db, LIMITS) == before
    with pytest.raises(IllegalTransition):
        await ledger.settle("j1", 1)


async def test_cannot_expire_a_paid_job(ledger: Ledger, db: Database,
                                        clock: ManualClock) -> None:
    await ledger.decide("g1", "alice", 10_000)
    await ledger.attach_invoice("g1", "hash-g1", 10_000, clock.now + 600)
    await ledger.confirm_payment("g1", 10_000, "pay:1")
    with pytest.raises(IllegalTransition):
        await ledger.expire_job("g1")
    assert (await ledger.job("g1")).state == "paid"
    await assert_invariants(db, LIMITS)


async def test_payment_for_a_free_job_becomes_balance(ledger: Ledger, db: Database) -> None:
    await ledger.credit_pool(30_000, "zap:1")
    await ledger.decide("f1", "alice", 10_000)
    out = await ledger.confirm_payment("f1", 5_000, "zap:x")
    assert (out.result, out.credited_balance_msat) == (PaymentVerdict.NOT_DUE, 5_000)
    await assert_invariants(db, LIMITS)


async def test_overdue_invoices_and_restart_queries(ledger: Ledger, db: Database,
                                                    clock: ManualClock) -> None:
    await ledger.credit_pool(10_000, "zap:1")
    await ledger.decide("f1", "alice", 5_000)  # running
    await ledger.decide("g1", "alice", 50_000)
    await ledger.attach_invoice("g1", "hash-g1", 45_000, clock.now + 600)
    await ledger.decide("g2", "bob", 50_000)
    await ledger.attach_invoice("g2", "hash-g2", 45_000, clock.now + 900)
    await ledger.confirm_payment("g2", 45_000, "pay:g2")  # paid
    assert await ledger.overdue_invoices() == []
    clock.advance(601)
    assert [j.id for j in await ledger.overdue_invoices()] == ["g1"]
    await ledger.expire_job("g1")
    assert await ledger.overdue_invoices() == []
    restart = await ledger.jobs_in_state(JobState.RUNNING, JobState.PAID)
    assert [(j.id, j.serve, j.state) for j in restart] == [
        ("f1", Serve.FREE, JobState.RUNNING), ("g2", Serve.PARTIAL, JobState.PAID)]
    for bad in ("bogus", "running"):  # states are JobState values, not strings
        with pytest.raises(InvalidInput):
            await ledger.jobs_in_state(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await ledger.jobs_in_state()
    await assert_invariants(db, LIMITS)


async def test_payment_for_a_cancelled_job_is_late(ledger: Ledger, db: Database,
                                                   clock: ManualClock) -> None:
    await ledger.decide("g1", "alice", 10_000)
    await ledger.attach_invoice("g1", "hash-g1", 10_000, clock.now + 600)
    before = await assert_invariants(db, LIMITS)
    job = await ledger.cancel("g1")
    assert job.state == "cancelled"
    assert await ledger.cancel("g1") == job  # a repeat: no-op
    assert await ledger.expire_job("g1") == job  # the expiry watcher comes later: no-op
    assert await assert_invariants(db, LIMITS) == before  # nothing moved
    assert [i.payment_hash for i in await ledger.open_invoices()] == []
    out = await ledger.confirm_payment("hash-g1", 10_000, "pay:g1")
    assert (out.result, out.job_paid, out.credited_balance_msat) == (
        PaymentVerdict.LATE, False, 10_000)
    assert (await ledger.job("g1")).state == "cancelled"
    assert (await ledger.balance("alice")).available_msat == 10_000
    await assert_invariants(db, LIMITS)


async def test_cancel_a_quote_and_what_cannot_be_cancelled(
        ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await ledger.credit_pool(10_000, "zap:1")
    await ledger.decide("q1", "alice", 50_000)  # partial, quoted, no invoice yet
    assert (await ledger.cancel("q1")).state == "cancelled"
    with pytest.raises(IllegalTransition):
        await ledger.attach_invoice("q1", "hash-q1", 40_000, clock.now + 600)
    await ledger.decide("f1", "bob", 5_000)  # free: running
    await ledger.decide("g1", "carol", 50_000)
    await ledger.attach_invoice("g1", "hash-g1", 45_000, clock.now + 600)
    await ledger.confirm_payment("g1", 45_000, "pay:g1")  # partial: paid
    before = await assert_invariants(db, LIMITS)
    for job in ("f1", "g1"):
        with pytest.raises(IllegalTransition):
            await ledger.cancel(job)
    assert await assert_invariants(db, LIMITS) == before
    # a paid job that will not run is failed instead: the whole payment is refunded
    f = await ledger.fail("g1", "asker withdrew")
    assert (f.refund_msat, f.released_msat) == (45_000, 5_000)
    await assert_invariants(db, LIMITS)


async def test_start_only_takes_a_paid_job(ledger: Ledger, db: Database,
                                           clock: ManualClock) -> None:
    await ledger.decide("g1", "alice", 10_000)
    with pytest.raises(IllegalTransition):  # quoted: not paid
        await ledger.start("g1")
    await ledger.attach_invoice("g1", "hash-g1", 10_000, clock.now + 600)
    with pytest.raises(IllegalTransition):  # invoiced: not paid
        await ledger.start("g1")
    await ledger.confirm_payment("g1", 10_000, "pay:g1")
    assert (await ledger.start("g1")).state == "running"
    assert [j.id for j in await ledger.jobs_in_state(JobState.RUNNING)] == ["g1"]
    await ledger.settle("g1", 10_000)
    with pytest.raises(IllegalTransition):  # done
        await ledger.start("g1")
    await assert_invariants(db, LIMITS)


async def test_credited_payments_are_the_balances_payments_made_with_their_outcomes(
        ledger: Ledger, db: Database, clock: ManualClock) -> None:
    """What the agent's start-up sweep reads to tell payers: every payment that became (partly)
    a balance since a time — over-, late, double payments by ``pay:`` or ``zap:`` key, and
    top-ups — with the outcome stored by its operation; a payment that only paid its job is not
    one of them."""
    since = clock.now
    for job in ("over", "paid", "late"):
        await ledger.decide(job, "alice", 20_000)
        await ledger.attach_invoice(job, f"hash-{job}", 20_000, clock.now + 600)
    await ledger.record_topup("bob", "hash-topup", 5_000, clock.now + 600)
    await ledger.confirm_payment("hash-over", 23_000, "pay:hash-over")
    await ledger.confirm_payment("hash-paid", 20_000, "pay:hash-paid")
    await ledger.confirm_payment("paid", 4_000, "zap:twice")
    await ledger.confirm_topup("hash-topup", 5_000, "pay:hash-topup")
    clock.advance(700)
    await ledger.confirm_payment("late", 20_000, "zap:late")
    found = await ledger.credited_payments(since)
    assert [(c.key, c.payment_hash, c.pubkey, c.outcome.result, c.outcome.amount_msat,
             c.outcome.credited_balance_msat) for c in found] == [
        ("pay:hash-over", "hash-over", "alice", PaymentVerdict.OVERPAID, 23_000, 3_000),
        ("zap:twice", "twice", "alice", PaymentVerdict.DUPLICATE, 4_000, 4_000),
        ("pay:hash-topup", "hash-topup", "bob", TopupResult.CREDITED, 5_000, 5_000),
        ("zap:late", "late", "alice", PaymentVerdict.LATE, 20_000, 20_000)]
    assert [c.credited_at for c in found] == [since] * 3 + [since + 700]
    assert [c.key for c in await ledger.credited_payments(since + 1)] == ["zap:late"]
    ids = [c.transfer_id for c in found]
    assert ids == sorted(set(ids))
    assert [c.key for c in await ledger.credited_payments(since, ids[1])] == [
        "pay:hash-topup", "zap:late"]
    assert await ledger.credited_payments(since, ids[-1]) == []
    with pytest.raises(InvalidInput):
        await ledger.credited_payments("yesterday")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await ledger.credited_payments(since, -1)
    await assert_invariants(db, LIMITS)
