"""Bad input is refused with a clear error and writes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from storage import (
    Database,
    IdempotencyConflict,
    IllegalTransition,
    InvalidAmount,
    InvalidInput,
    Ledger,
    LedgerError,
    Limits,
    UnknownJob,
    UnknownPayout,
)
from tests.storage.conftest import LIMITS
from tests.storage.support import ManualClock, assert_invariants, state_digest

BAD_AMOUNTS: list[Any] = [0, -1, -10**20, 10**30, 1.5, 1000.0, "1000", None, True, 2**63]

Op = Callable[[Ledger], Awaitable[object]]


def _amount_ops(amount: Any) -> list[Op]:
    return [
        lambda lg: lg.credit_pool(amount, "k-pool"),
        lambda lg: lg.credit_balance("alice", amount, "k-bal", "topup"),
        lambda lg: lg.decide("new-job", "alice", amount),
        lambda lg: lg.decide_dry_run("alice", amount),
        lambda lg: lg.confirm_payment("hash-g1", amount, "k-pay"),
        lambda lg: lg.attach_invoice("g2", "hash-g2", amount, 2_000_000_000),
    ]


async def _seed(ledger: Ledger, clock: ManualClock) -> None:
    await ledger.credit_pool(20_000, "zap:1")
    await ledger.decide("f1", "alice", 10_000)
    await ledger.decide("g1", "alice", 50_000)
    await ledger.attach_invoice("g1", "hash-g1", 40_000, clock.now + 600)
    await ledger.decide("g2", "bob", 50_000)
    await ledger.credit_balance("alice", 5_000, "pay:x", "topup")


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=repr)
async def test_bad_amounts_are_refused_and_write_nothing(
        db_location: str, clock: ManualClock, amount: Any) -> None:
    db = await Database.open(db_location)
    ledger = Ledger(db, LIMITS, clock=clock)
    await _seed(ledger, clock)
    before = await state_digest(db)
    for op in _amount_ops(amount):
        with pytest.raises(InvalidAmount):
            await op(ledger)
    assert await state_digest(db) == before
    await assert_invariants(db, LIMITS)
    await db.close()


async def test_wrong_state_unknown_ids_and_conflicts(
        db_location: str, clock: ManualClock) -> None:
    db = await Database.open(db_location)
    ledger = Ledger(db, LIMITS, clock=clock)
    await _seed(ledger, clock)
    before = await state_digest(db)
    cases: list[tuple[type[LedgerError], Op]] = [
        (UnknownJob, lambda lg: lg.settle("nope", 1)),
        (UnknownJob, lambda lg: lg.confirm_payment("nope", 1, "k1")),
        (UnknownJob, lambda lg: lg.fail("nope", "x")),
        (UnknownJob, lambda lg: lg.start("nope")),
        (UnknownJob, lambda lg: lg.cancel("nope")),
        (UnknownJob, lambda lg: lg.expire_job("nope")),
        (UnknownJob, lambda lg: lg.job("nope")),
        (UnknownJob, lambda lg: lg.attach_invoice("nope", "h", 1_000, 2_000_000_000)),
        (UnknownPayout, lambda lg: lg.confirm_payout(99, "pre", 0)),
        (UnknownPayout, lambda lg: lg.fail_payout(99, "x")),
        (IllegalTransition, lambda lg: lg.settle("g1", 1)),          # not paid yet
        (IllegalTransition, lambda lg: lg.settle("g2", 1)),          # no invoice, not paid
        (IllegalTransition, lambda lg: lg.fail("g1", "x")),          # not paid: cancel it
        (IllegalTransition, lambda lg: lg.reserve_partial_grant("g1")),
        (IllegalTransition, lambda lg: lg.cancel("f1")),
        (IllegalTransition, lambda lg: lg.attach_invoice("f1", "h", 1_000, 2_000_000_000)),
        (IllegalTransition, lambda lg: lg.attach_invoice("g1", "h9", 40_000, 2_000_000_000)),
        (IllegalTransition, lambda lg: lg.credit_refund_to_balance("g1")),
        (IllegalTransition, lambda lg: lg.begin_payout("f1", "lnbc", "k-po")),
        (InvalidAmount, lambda lg: lg.attach_invoice("g2", "h2", 1, 2_000_000_000)),
        (InvalidAmount, lambda lg: lg.settle("f1", 10_001)),
        (InvalidAmount, lambda lg: lg.confirm_payout(1, "pre", -1)),
        (InvalidInput, lambda lg: lg.fail("f1", "")),
        (InvalidInput, lambda lg: lg.decide("", "alice", 1)),
        (InvalidInput, lambda lg: lg.decide("x" * 600, "alice", 1)),
        (InvalidInput, lambda lg: lg.decide("j\n", "alice", 1)),
        (InvalidInput, lambda lg: lg.credit_pool(1, "k", source="gift")),
        (InvalidInput, lambda lg: lg.attach_invoice("g2", "h2", 10_000, -5)),
        (InvalidInput, lambda lg: lg.confirm_payout(0, "pre", 0)),
        (InvalidInput, lambda lg: lg.recent_jobs("alice", 0)),
        (IdempotencyConflict, lambda lg: lg.decide("f1", "alice", 9_000)),
        (IdempotencyConflict, lambda lg: lg.decide("g1", "bob", 50_000)),
        (IdempotencyConflict, lambda lg: lg.credit_pool(30_000, "zap:1")),
        (IdempotencyConflict, lambda lg: lg.credit_balance("alice", 5_000, "zap:1", "topup")),
    ]
    for error, op in cases:
        with pytest.raises(error):
            await op(ledger)
    assert await state_digest(db) == before
    await assert_invariants(db, LIMITS)
    await db.close()


def test_bad_limits_are_refused() -> None:
    for kwargs in ({"daily_free_msat": -1, "daily_free_jobs": 1},
                   {"daily_free_msat": 1.5, "daily_free_jobs": 1},
                   {"daily_free_msat": 1, "daily_free_jobs": 1, "pool_daily_cap_msat": -2}):
        with pytest.raises(InvalidInput):
            Limits(**kwargs)


def test_errors_are_one_hierarchy() -> None:
    for cls in (InvalidAmount, InvalidInput, UnknownJob, UnknownPayout, IllegalTransition,
                IdempotencyConflict):
        assert issubclass(cls, LedgerError)
    assert issubclass(InvalidAmount, ValueError)
    assert issubclass(UnknownJob, LookupError)
