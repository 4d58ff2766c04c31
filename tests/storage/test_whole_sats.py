"""Whole sats on the wire: an invoice is the work amount rounded up to whole sats; the ledger
keeps msat, escrows what was paid, and gives the rounding back at settlement like any other part
of a payment the work did not use — as a refund of whole sats, its sub-sat rest as balance."""

from __future__ import annotations

import pytest

from storage import (
    Database,
    InvalidAmount,
    Ledger,
    PaymentVerdict,
    RefundState,
    Serve,
    whole_sats_up,
)
from tests.storage.conftest import LIMITS
from tests.storage.support import ManualClock, assert_invariants


def test_whole_sats_up() -> None:
    assert [whole_sats_up(m) for m in (0, 1, 999, 1_000, 1_001, 10_500, 21_000_000)] == [
        0, 1_000, 1_000, 1_000, 2_000, 11_000, 21_000_000]


async def _gate(ledger: Ledger, clock: ManualClock, job: str = "g1") -> None:
    """A gate job of 10 500 msat: its invoice is 11 sats."""
    d = await ledger.decide(job, "alice", 10_500)
    assert (d.serve, d.work_amount_msat) == (Serve.GATE, 10_500)
    await ledger.attach_invoice(job, f"hash-{job}", whole_sats_up(d.work_amount_msat),
                                clock.now + 600)


async def test_the_invoice_is_the_work_amount_in_whole_sats(
        ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await ledger.decide("g1", "alice", 10_500)
    before = await assert_invariants(db, LIMITS)
    for wrong in (10_500, 10_000, 12_000, 11_001, 1):  # a fraction, short, a sat over, fractions
        with pytest.raises(InvalidAmount):
            await ledger.attach_invoice("g1", "hash-g1", wrong, clock.now + 600)
    assert (await ledger.job("g1")).state == "quoted"
    assert await assert_invariants(db, LIMITS) == before
    job = await ledger.attach_invoice("g1", "hash-g1", 11_000, clock.now + 600)
    assert (job.state, job.invoice_msat, job.work_amount_msat) == ("invoiced", 11_000, 10_500)
    [invoice] = await ledger.open_invoices()
    assert invoice.amount_msat == 11_000


async def test_paying_the_invoice_escrows_it_all_and_settlement_returns_the_rounding(
        ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await _gate(ledger, clock)
    out = await ledger.confirm_payment("hash-g1", 11_000, "pay:hash-g1")
    assert (out.result, out.job_paid, out.credited_balance_msat) == (
        PaymentVerdict.PAID, True, 0)
    assert (await ledger.job("g1")).paid_msat == 11_000
    assert (await assert_invariants(db, LIMITS))["escrow"] == 11_000
    await ledger.start("g1")
    done = await ledger.settle("g1", 10_500)  # the whole estimate: only the rounding comes back
    assert (done.charged_msat, done.refund_msat, done.credited_balance_msat) == (10_500, 0, 500)
    job = await ledger.job("g1")
    assert (job.refund_state, job.refund_msat) == (RefundState.NONE, 0)  # no sub-sat refund
    balances = await assert_invariants(db, LIMITS)
    assert (balances["revenue"], balances["refunds"], balances["escrow"]) == (10_500, 0, 0)
    assert (await ledger.balance("alice")).available_msat == 500


async def test_a_cheaper_answer_refunds_the_rest_and_the_rounding(
        ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await _gate(ledger, clock)
    await ledger.confirm_payment("hash-g1", 11_000, "pay:hash-g1")
    await ledger.start("g1")
    done = await ledger.settle("g1", 3_250)
    assert (done.charged_msat, done.refund_msat, done.credited_balance_msat) == (3_250, 7_000, 750)
    balances = await assert_invariants(db, LIMITS)
    assert balances["revenue"] + balances["refunds"] + balances["balance:alice"] == 11_000
    assert -balances["lightning_in"] == 11_000


async def test_partial_settlement_with_rounding(ledger: Ledger, db: Database,
                                                clock: ManualClock) -> None:
    await ledger.credit_pool(30_000, "zap:1")
    d = await ledger.decide("p1", "alice", 50_500)
    assert (d.serve, d.absorb_msat, d.work_amount_msat) == (Serve.PARTIAL, 30_000, 20_500)
    await ledger.attach_invoice("p1", "hash-p1", 21_000, clock.now + 600)
    assert (await ledger.confirm_payment("hash-p1", 21_000, "pay:p1")).result is (
        PaymentVerdict.PAID)
    await ledger.start("p1")
    done = await ledger.settle("p1", 50_500)
    assert (done.charged_msat, done.absorbed_msat, done.refund_msat,
            done.credited_balance_msat) == (20_500, 30_000, 0, 500)
    balances = await assert_invariants(db, LIMITS)
    assert (balances["revenue"], balances["subsidy"], balances["balance:alice"]) == (
        20_500, 30_000, 500)


async def test_failure_refunds_everything_paid(ledger: Ledger, db: Database,
                                               clock: ManualClock) -> None:
    await _gate(ledger, clock)
    await ledger.confirm_payment("hash-g1", 11_000, "pay:hash-g1")
    await ledger.start("g1")
    f = await ledger.fail("g1", "backend timeout")
    assert f.refund_msat == 11_000
    job = await ledger.job("g1")
    assert (job.refund_state, job.refund_msat) == (RefundState.PENDING, 11_000)
    assert (await assert_invariants(db, LIMITS))["refunds"] == 11_000


async def test_terms_changed_refunds_everything_paid(ledger: Ledger, db: Database,
                                                     clock: ManualClock) -> None:
    await ledger.credit_pool(30_000, "zap:1")
    await ledger.decide("p1", "alice", 50_500)
    await ledger.attach_invoice("p1", "hash-p1", 21_000, clock.now + 600)
    await ledger.decide("thief", "mallory", 30_000)  # the pool is drained before the payment
    out = await ledger.confirm_payment("hash-p1", 21_000, "pay:p1")
    assert (out.result, out.refund_msat, out.credited_balance_msat) == (
        PaymentVerdict.TERMS_CHANGED, 21_000, 0)
    assert (await assert_invariants(db, LIMITS))["refunds"] == 21_000


async def test_above_the_invoice_is_balance_at_the_work_amount_is_paid(
        ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await _gate(ledger, clock, "over")
    out = await ledger.confirm_payment("hash-over", 11_700, "pay:over")
    assert (out.result, out.job_paid, out.credited_balance_msat) == (
        PaymentVerdict.OVERPAID, True, 700)
    assert (await ledger.job("over")).paid_msat == 11_000
    # a payment of exactly the work amount (e.g. a zap naming the quote) pays the job
    await _gate(ledger, clock, "exact")
    out = await ledger.confirm_payment("exact", 10_500, "zap:exact")
    assert (out.result, out.job_paid) == (PaymentVerdict.PAID, True)
    await ledger.start("exact")
    assert (await ledger.settle("exact", 10_500)).refund_msat == 0
    # below the work amount is not a payment of the job
    await _gate(ledger, clock, "short")
    out = await ledger.confirm_payment("short", 10_499, "zap:short")
    assert (out.result, out.job_paid, out.credited_balance_msat) == (
        PaymentVerdict.UNDERPAID, False, 10_499)
    assert (await ledger.balance("alice")).available_msat == 700 + 10_499
    await assert_invariants(db, LIMITS)
