"""check() finds every kind of tampering with the stored state."""

from __future__ import annotations

import pytest

from storage import Database, Ledger, Limits, check
from tests.storage.conftest import LIMITS
from tests.storage.support import ManualClock, assert_invariants, raw


async def _populated(db_location: str, clock: ManualClock) -> None:
    db = await Database.open(db_location)
    ledger = Ledger(db, LIMITS, clock=clock)
    await ledger.credit_pool(100_000, "zap:1", zapper_pubkey="z")
    await ledger.decide("f1", "alice", 30_000)
    await ledger.decide("g1", "bob", 500_000)
    await ledger.attach_invoice("g1", "h", 430_000, clock.now + 60)
    await ledger.confirm_payment("h", 430_000, "pay:h")
    for job in ("r1", "r2"):  # two refunds: one paid out, one in flight
        await ledger.decide(job, "carol", 10_000)
        await ledger.attach_invoice(job, f"h-{job}", 10_000, clock.now + 60)
        await ledger.confirm_payment(job, 10_000, f"pay:{job}")
        await ledger.start(job)
        await ledger.settle(job, 4_000)
    p1 = await ledger.begin_payout("r1", "lnbc-1", "po:r1")
    await ledger.confirm_payout(p1.payout_id, "pre-1", 3)
    await ledger.begin_payout("r2", "lnbc-2", "po:r2")
    await assert_invariants(db, LIMITS)
    await db.close()


@pytest.mark.parametrize("tamper", [
    "UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = 'pool'",
    "UPDATE accounts SET debits_pending = 0 WHERE id = 'pool'",
    "UPDATE daily_usage SET absorbed_msat = 1",
    "UPDATE daily_usage SET jobs = 3",
    "UPDATE pool_daily SET spent_msat = 7",
    "UPDATE jobs SET paid_msat = 1 WHERE id = 'g1'",
    "UPDATE jobs SET refund_state = 'pending', refund_msat = 5 WHERE id = 'g1'",
    "DROP TRIGGER transfers_no_update; UPDATE transfers SET amount_msat = 1 WHERE key = 'zap:1'",
    "UPDATE payouts SET state = 'paid' WHERE job_id = 'r2'",
    "UPDATE payouts SET state = 'failed' WHERE job_id = 'r1'",
    "UPDATE jobs SET refund_ref = 'other' WHERE id = 'r1'",
    "UPDATE jobs SET refund_state = 'pending' WHERE id = 'r2'",
    "UPDATE jobs SET refund_state = 'paying' WHERE id = 'r1'",
    "UPDATE jobs SET state = 'finished' WHERE id = 'f1'",
    "UPDATE jobs SET invoice_msat = 10500 WHERE id = 'r2'",
    "UPDATE jobs SET charged_msat = 4001 WHERE id = 'r1'",
])
async def test_tampering_is_reported(db_location: str, clock: ManualClock, tamper: str) -> None:
    await _populated(db_location, clock)
    with raw(db_location) as conn:
        for statement in tamper.split("; "):
            if db_location.startswith("postgresql") and statement.startswith("DROP TRIGGER"):
                statement += " ON transfers"
            conn.execute(statement)
    db = await Database.open(db_location)
    report = await check(db)
    assert not report.ok
    await db.close()


async def test_limits_are_checked_when_given(db_location: str, clock: ManualClock) -> None:
    await _populated(db_location, clock)
    db = await Database.open(db_location)
    assert (await check(db, LIMITS)).ok
    report = await check(db, Limits(daily_free_msat=10_000, daily_free_jobs=5))
    assert any("daily limit" in v for v in report.violations)
    await db.close()
