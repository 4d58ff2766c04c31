"""Free jobs: the pool is reserved in the decision's transaction; grant or release later."""

from __future__ import annotations

from storage import Database, IllegalTransition, Ledger, Limits, Reason, Serve
from tests.storage.conftest import LIMITS
from tests.storage.support import ManualClock, assert_invariants


async def test_free_decision_reserves_the_pool_at_once(ledger: Ledger, db: Database) -> None:
    await ledger.credit_pool(50_000, "zap:a", source="zap", zapper_pubkey="z")
    d = await ledger.decide("job1", "alice", 30_000)
    assert (d.serve, d.reason, d.absorb_msat, d.work_amount_msat) == (
        Serve.FREE, Reason.COVERED, 30_000, 0)
    pool = await ledger.pool_status()
    assert (pool.available_msat, pool.reserved_msat) == (20_000, 30_000)
    allowance = await ledger.allowance("alice")
    assert (allowance.free_msat_left, allowance.free_jobs_left) == (70_000, 4)
    job = await ledger.job("job1")
    assert (job.state, job.reserved_msat) == ("running", 30_000)
    await assert_invariants(db, LIMITS)


async def test_reserved_pool_is_not_promised_twice(ledger: Ledger, db: Database) -> None:
    await ledger.credit_pool(50_000, "zap:a")
    assert (await ledger.decide("j1", "alice", 40_000)).serve is Serve.FREE
    second = await ledger.decide("j2", "bob", 40_000)
    assert (second.serve, second.reason, second.absorb_msat) == (
        Serve.PARTIAL, Reason.POOL_SHORT, 10_000)
    assert (await ledger.decide("j3", "carol", 40_000)).serve is Serve.PARTIAL
    await ledger.decide("j4", "dave", 10_000)  # takes the last 10 000
    gate = await ledger.decide("j5", "erin", 1_000)
    assert (gate.serve, gate.reason, gate.work_amount_msat) == (
        Serve.GATE, Reason.POOL_SHORT, 1_000)
    await assert_invariants(db, LIMITS)


async def test_empty_pool_gates(ledger: Ledger, db: Database) -> None:
    d = await ledger.decide("j1", "alice", 5_000)
    assert (d.serve, d.absorb_msat, d.work_amount_msat) == (Serve.GATE, 0, 5_000)
    assert (await ledger.job("j1")).state == "quoted"
    await assert_invariants(db, LIMITS)


async def test_release_returns_everything_and_restores_counters(
        ledger: Ledger, db: Database) -> None:
    await ledger.credit_pool(50_000, "zap:a")
    await ledger.decide("j1", "alice", 30_000)
    failure = await ledger.fail("j1", "work failed")
    assert (failure.released_msat, failure.refund_msat) == (30_000, 0)
    pool = await ledger.pool_status()
    assert (pool.available_msat, pool.reserved_msat, pool.spent_today_msat) == (50_000, 0, 0)
    allowance = await ledger.allowance("alice")
    assert (allowance.free_msat_left, allowance.free_jobs_left) == (100_000, 5)
    assert (await ledger.job("j1")).state == "failed"
    await assert_invariants(db, LIMITS)


async def test_settle_returns_over_reservation(ledger: Ledger, db: Database) -> None:
    await ledger.credit_pool(50_000, "zap:a")
    await ledger.decide("j1", "alice", 30_000)
    grant = await ledger.settle("j1", 12_000)
    assert (grant.serve, grant.absorbed_msat, grant.released_msat) == (Serve.FREE, 12_000, 18_000)
    assert (grant.charged_msat, grant.refund_msat) == (0, 0)
    pool = await ledger.pool_status()
    assert (pool.available_msat, pool.spent_today_msat, pool.total_spent_msat) == (
        38_000, 12_000, 12_000)
    allowance = await ledger.allowance("alice")
    assert allowance.free_msat_left == 88_000  # the counter shows the actual, not the estimate
    balances = await assert_invariants(db, LIMITS)
    assert balances["subsidy"] == 12_000
    # the grant is recorded once: a repeat returns the same outcome and moves nothing
    assert await ledger.settle("j1", 12_000) == grant
    assert (await ledger.pool_status()).available_msat == 38_000


async def test_grant_of_zero_uncounts_the_job(ledger: Ledger, db: Database) -> None:
    await ledger.credit_pool(50_000, "zap:a")
    await ledger.decide("j1", "alice", 30_000)
    await ledger.settle("j1", 0)
    allowance = await ledger.allowance("alice")
    assert (allowance.free_msat_left, allowance.free_jobs_left) == (100_000, 5)
    await assert_invariants(db, LIMITS)


async def test_settle_after_failure_is_refused(ledger: Ledger, db: Database) -> None:
    await ledger.credit_pool(50_000, "zap:a")
    await ledger.decide("j1", "alice", 30_000)
    await ledger.fail("j1", "work failed")
    before = await assert_invariants(db, LIMITS)
    try:
        await ledger.settle("j1", 10_000)
    except IllegalTransition:
        pass
    else:
        raise AssertionError("a released job was granted")
    assert await assert_invariants(db, LIMITS) == before


async def test_daily_allowance_and_job_limit(ledger: Ledger, db: Database) -> None:
    await ledger.credit_pool(1_000_000, "op:1", source="operator")
    d1 = await ledger.decide("j1", "alice", 80_000)
    assert d1.serve is Serve.FREE
    d2 = await ledger.decide("j2", "alice", 30_000)
    assert (d2.serve, d2.reason, d2.absorb_msat) == (Serve.PARTIAL, Reason.ALLOWANCE_SHORT, 20_000)
    for i in range(4):
        assert (await ledger.decide(f"k{i}", "bob", 1_000)).serve is Serve.FREE
    assert (await ledger.decide("k4", "bob", 1_000)).serve is Serve.FREE  # 5th job
    sixth = await ledger.decide("k5", "bob", 1_000)
    assert (sixth.serve, sixth.reason) == (Serve.GATE, Reason.JOBS_LIMIT)
    await assert_invariants(db, LIMITS)


async def test_limits_reset_at_the_utc_day_boundary(
        ledger: Ledger, db: Database, clock: ManualClock) -> None:
    await ledger.credit_pool(1_000_000, "op:1", source="operator")
    await ledger.decide("j1", "alice", 100_000)
    assert (await ledger.decide("j2", "alice", 1_000)).serve is Serve.GATE
    clock.advance(3600)  # midnight UTC
    assert (await ledger.decide("j3", "alice", 100_000)).serve is Serve.FREE
    # a release on the new day corrects the counters of the day the reservation was made
    await ledger.fail("j1", "work failed")
    clock.advance(-3600)
    assert (await ledger.allowance("alice")).free_msat_left == 100_000
    clock.advance(3600)
    assert (await ledger.allowance("alice")).free_msat_left == 0
    await assert_invariants(db, LIMITS)


async def test_global_daily_pool_cap(db: Database, clock: ManualClock) -> None:
    limits = Limits(daily_free_msat=100_000, daily_free_jobs=5, pool_daily_cap_msat=50_000)
    ledger = Ledger(db, limits, clock=clock)
    await ledger.credit_pool(1_000_000, "op:1", source="operator")
    assert (await ledger.decide("j1", "alice", 40_000)).serve is Serve.FREE
    d = await ledger.decide("j2", "bob", 40_000)
    assert (d.serve, d.reason, d.absorb_msat) == (Serve.PARTIAL, Reason.POOL_CAP, 10_000)
    await ledger.settle("j1", 20_000)
    assert (await ledger.pool_status()).spent_today_msat == 20_000
    assert (await ledger.decide("j3", "carol", 30_000)).serve is Serve.FREE
    clock.advance(3600)
    assert (await ledger.pool_status()).spent_today_msat == 0
    await assert_invariants(db, limits)


async def test_decide_is_idempotent_by_job_id(ledger: Ledger, db: Database) -> None:
    await ledger.credit_pool(50_000, "zap:a")
    d1 = await ledger.decide("j1", "alice", 30_000)
    await ledger.credit_pool(50_000, "zap:b")  # state changed; the decision stays the original
    assert await ledger.decide("j1", "alice", 30_000) == d1
    assert (await ledger.pool_status()).reserved_msat == 30_000
    await assert_invariants(db, LIMITS)
