"""Refunds: none → pending → paying → paid | credited; payouts recorded before they are sent."""

from __future__ import annotations

import pytest

from storage import (
    Database,
    IdempotencyConflict,
    IllegalTransition,
    InvalidInput,
    Ledger,
    PayoutState,
    RefundState,
)
from tests.storage.conftest import LIMITS
from tests.storage.support import ManualClock, assert_invariants


async def _refund(ledger: Ledger, clock: ManualClock, job: str = "g1") -> None:
    """A gate job paid 10 000 whose work cost 4 000: a pending refund of 6 000."""
    await ledger.decide(job, "alice", 10_000)
    await ledger.attach_invoice(job, f"hash-{job}", 10_000, clock.now + 600)
    await ledger.confirm_payment(job, 10_000, f"pay:{job}")
    await ledger.start(job)
    assert (await ledger.settle(job, 4_000)).refund_msat == 6_000


async def test_payout_paid(ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await _refund(ledger, clock)
    [refund] = await ledger.pending_refunds("alice")
    assert (refund.amount_msat, refund.state) == (6_000, RefundState.PENDING)
    p = await ledger.begin_payout("g1", "lnbc60n1...", "payout:g1:1")
    assert (p.state, p.amount_msat) == (PayoutState.SENDING, 6_000)
    assert (await ledger.job("g1")).refund_state is RefundState.PAYING
    assert await ledger.unfinished_payouts() == [p]
    # claimed once: a second claim is refused while the first is in flight
    with pytest.raises(IllegalTransition):
        await ledger.begin_payout("g1", "lnbc-other", "payout:g1:2")
    with pytest.raises(IllegalTransition):
        await ledger.credit_refund_to_balance("g1")
    done = await ledger.confirm_payout(p.payout_id, "preimage-1", 12)
    assert (done.state, done.preimage, done.fee_msat) == (PayoutState.PAID, "preimage-1", 12)
    job = await ledger.job("g1")
    assert (job.refund_state, job.refund_ref) == (RefundState.PAID, "preimage-1")
    assert await ledger.unfinished_payouts() == []
    assert await ledger.confirm_payout(p.payout_id, "preimage-1", 12) == done  # repeat
    with pytest.raises(IdempotencyConflict):
        await ledger.confirm_payout(p.payout_id, "preimage-2", 12)
    with pytest.raises(IllegalTransition):
        await ledger.fail_payout(p.payout_id, "too late")
    balances = await assert_invariants(db, LIMITS)
    assert (balances["refunds"], balances["payouts"], balances["fees"]) == (0, 6_000, 12)


async def test_failed_payout_makes_the_refund_claimable_again(
        ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await _refund(ledger, clock)
    p = await ledger.begin_payout("g1", "lnbc-a", "payout:g1:1")
    failed = await ledger.fail_payout(p.payout_id, "no route")
    assert (failed.state, failed.reason) == (PayoutState.FAILED, "no route")
    assert (await ledger.job("g1")).refund_state is RefundState.PENDING
    assert await ledger.fail_payout(p.payout_id, "no route") == failed
    with pytest.raises(IllegalTransition):
        await ledger.confirm_payout(p.payout_id, "pre", 0)
    p2 = await ledger.begin_payout("g1", "lnbc-b", "payout:g1:2")
    await ledger.confirm_payout(p2.payout_id, "pre-b", 0)
    balances = await assert_invariants(db, LIMITS)
    assert (balances["refunds"], balances["payouts"]) == (0, 6_000)


async def test_begin_payout_is_idempotent_by_key(ledger: Ledger, db: Database,
                                                 clock: ManualClock) -> None:
    await _refund(ledger, clock)
    p = await ledger.begin_payout("g1", "lnbc-a", "payout:g1:1")
    assert await ledger.begin_payout("g1", "lnbc-a", "payout:g1:1") == p
    with pytest.raises(IdempotencyConflict):
        await ledger.begin_payout("g1", "lnbc-b", "payout:g1:1")
    assert len(await ledger.unfinished_payouts()) == 1
    await assert_invariants(db, LIMITS)


async def test_refund_kept_as_balance(ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await _refund(ledger, clock)
    r = await ledger.credit_refund_to_balance("g1")
    assert (r.state, r.amount_msat) == (RefundState.CREDITED, 6_000)
    assert await ledger.credit_refund_to_balance("g1") == r  # once
    view = await ledger.balance("alice")
    assert (view.available_msat, view.pending_refund_msat) == (6_000, 0)
    with pytest.raises(IllegalTransition):
        await ledger.begin_payout("g1", "lnbc-a", "payout:g1:1")
    await assert_invariants(db, LIMITS)


async def test_no_refund_no_payout(ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await ledger.decide("g1", "alice", 10_000)
    with pytest.raises(IllegalTransition):
        await ledger.begin_payout("g1", "lnbc-a", "payout:g1:1")
    with pytest.raises(InvalidInput):
        await ledger.confirm_payout(1, "", 0)
    await assert_invariants(db, LIMITS)


async def test_a_partial_payout_leaves_the_remainder_as_balance(
        ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await ledger.decide("g1", "alice", 10_500)
    await ledger.attach_invoice("g1", "hash-g1", 11_000, clock.now + 600)  # whole sats
    await ledger.confirm_payment("g1", 11_000, "pay:g1")
    await ledger.start("g1")
    done = await ledger.settle("g1", 4_500)  # 6 500 back: a refund of 6 sats, 500 msat balance
    assert (done.refund_msat, done.credited_balance_msat) == (6_000, 500)
    with pytest.raises(InvalidInput):  # more than the refund
        await ledger.begin_payout("g1", "lnbc-a", "payout:g1:1", amount_msat=6_001)
    with pytest.raises(InvalidInput):
        await ledger.begin_payout("g1", "lnbc-a", "payout:g1:1", amount_msat=0)
    p = await ledger.begin_payout("g1", "lnbc-a", "payout:g1:1", amount_msat=5_000)
    assert (p.amount_msat, p.remainder_msat) == (5_000, 1_000)
    with pytest.raises(IdempotencyConflict):
        await ledger.begin_payout("g1", "lnbc-a", "payout:g1:1", amount_msat=4_000)
    # a failed attempt gives the whole refund back, remainder included
    await ledger.fail_payout(p.payout_id, "no route")
    assert (await ledger.balance("alice")).pending_refund_msat == 6_000
    assert (await ledger.balance("alice")).available_msat == 500
    p2 = await ledger.begin_payout("g1", "lnbc-b", "payout:g1:2", amount_msat=5_000)
    await assert_invariants(db, LIMITS)
    paid = await ledger.confirm_payout(p2.payout_id, "preimage-1", 0)
    assert (paid.state, paid.amount_msat, paid.remainder_msat) == (
        PayoutState.PAID, 5_000, 1_000)
    assert await ledger.confirm_payout(p2.payout_id, "preimage-1", 0) == paid  # repeat
    view = await ledger.balance("alice")
    assert (view.available_msat, view.pending_refund_msat) == (1_500, 0)
    assert (await ledger.job("g1")).refund_state is RefundState.PAID
    balances = await assert_invariants(db, LIMITS)
    assert (balances["refunds"], balances["payouts"]) == (0, 5_000)
