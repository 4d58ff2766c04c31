"""Sessions (SPEC §1): a prepaid balance that covers what the subsidy leaves to pay is served at
once; the subsidy is reserved from the pool at decision time, the rest held from the balance;
after the work the pool keeps min(actual, subsidy) and the balance pays the rest."""

from __future__ import annotations

import asyncio

import pytest

from storage import Database, IllegalTransition, InvalidAmount, Ledger, Reason, Serve
from tests.storage.conftest import LIMITS
from tests.storage.support import ManualClock, assert_invariants, state_digest


async def test_session_with_subsidy(ledger: Ledger, db: Database) -> None:
    await ledger.credit_balance("alice", 50_000, "pay:topup", "topup")
    await ledger.credit_pool(10_000, "zap:1")
    d = await ledger.decide("s1", "alice", 40_000)
    assert (d.serve, d.reason, d.hold_msat, d.absorb_msat, d.work_amount_msat) == (
        Serve.SESSION, Reason.POOL_SHORT, 30_000, 10_000, 30_000)
    assert (await ledger.job("s1")).state == "running"
    view = await ledger.balance("alice")
    assert (view.available_msat, view.held_msat) == (20_000, 30_000)
    assert (await ledger.pool_status()).reserved_msat == 10_000  # reserved now, like free
    s = await ledger.settle("s1", 25_000)
    assert (s.absorbed_msat, s.charged_msat, s.released_msat) == (10_000, 15_000, 15_000)
    assert (await ledger.balance("alice")).available_msat == 35_000
    assert (await ledger.allowance("alice")).free_msat_left == 90_000
    balances = await assert_invariants(db, LIMITS)
    assert (balances["revenue"], balances["subsidy"], balances["pool"]) == (15_000, 10_000, 0)


async def test_free_comes_before_session(ledger: Ledger, db: Database) -> None:
    """A prepaid balance never costs its holder a free answer."""
    await ledger.credit_balance("alice", 50_000, "pay:topup", "topup")
    await ledger.credit_pool(50_000, "zap:1")
    d = await ledger.decide("f1", "alice", 40_000)
    assert (d.serve, d.hold_msat) == (Serve.FREE, 0)
    assert (await ledger.balance("alice")).available_msat == 50_000
    await assert_invariants(db, LIMITS)


async def test_the_reserved_subsidy_survives_a_drained_pool(ledger: Ledger, db: Database) -> None:
    """Another job cannot take the session's subsidy: it was reserved at decision time."""
    await ledger.credit_balance("alice", 50_000, "pay:topup", "topup")
    await ledger.credit_pool(10_000, "zap:1")
    d = await ledger.decide("s1", "alice", 40_000)
    assert (d.serve, d.absorb_msat) == (Serve.SESSION, 10_000)
    assert (await ledger.decide("later", "bob", 10_000)).serve is Serve.GATE  # nothing left
    s = await ledger.settle("s1", 25_000)
    assert (s.absorbed_msat, s.charged_msat) == (10_000, 15_000)
    await assert_invariants(db, LIMITS)


async def test_session_subsidy_is_capped_by_actual(ledger: Ledger, db: Database) -> None:
    await ledger.credit_balance("alice", 50_000, "pay:topup", "topup")
    await ledger.credit_pool(30_000, "zap:1")
    assert (await ledger.decide("s1", "alice", 40_000)).serve is Serve.SESSION
    s = await ledger.settle("s1", 5_000)
    assert (s.absorbed_msat, s.charged_msat, s.released_msat) == (5_000, 0, 35_000)
    assert (await ledger.balance("alice")).available_msat == 50_000
    assert (await ledger.pool_status()).available_msat == 25_000  # the rest returned
    await assert_invariants(db, LIMITS)


async def test_a_session_needs_only_what_the_subsidy_leaves(ledger: Ledger, db: Database) -> None:
    """SPEC §1: a balance covering ``estimate - subsidy`` is a session; one short of it gets a
    partial quote and nothing moves."""
    await ledger.credit_balance("alice", 29_000, "pay:topup", "topup")
    await ledger.credit_pool(10_000, "zap:1")
    before = await assert_invariants(db, LIMITS)
    d = await ledger.decide("p1", "alice", 40_000)
    assert (d.serve, d.hold_msat, d.absorb_msat, d.work_amount_msat) == (
        Serve.PARTIAL, 0, 10_000, 30_000)
    assert (await ledger.job("p1")).state == "quoted"
    assert await assert_invariants(db, LIMITS) == before  # nothing moved
    await ledger.credit_balance("alice", 1_000, "pay:topup2", "topup")
    again = await ledger.decide("s2", "alice", 40_000)  # a new request after a top-up
    assert (again.serve, again.hold_msat, again.absorb_msat) == (Serve.SESSION, 30_000, 10_000)
    s = await ledger.settle("s2", 40_000)  # the whole estimate: the hold pays exactly the rest
    assert (s.absorbed_msat, s.charged_msat) == (10_000, 30_000)
    assert (await ledger.balance("alice")).available_msat == 0
    await assert_invariants(db, LIMITS)


async def test_session_without_subsidy(ledger: Ledger, db: Database) -> None:
    await ledger.credit_balance("alice", 50_000, "pay:topup", "topup")
    d = await ledger.decide("s1", "alice", 40_000)
    assert (d.serve, d.reason, d.absorb_msat, d.work_amount_msat, d.hold_msat) == (
        Serve.SESSION, Reason.POOL_SHORT, 0, 40_000, 40_000)
    s = await ledger.settle("s1", 40_000)
    assert (s.absorbed_msat, s.charged_msat, s.released_msat) == (0, 40_000, 0)
    balances = await assert_invariants(db, LIMITS)
    assert (balances["revenue"], balances["balance:alice"]) == (40_000, 10_000)


async def test_session_failure_releases_the_hold(ledger: Ledger, db: Database) -> None:
    await ledger.credit_balance("alice", 50_000, "pay:topup", "topup")
    await ledger.decide("s1", "alice", 40_000)
    f = await ledger.fail("s1", "work failed")
    assert f.released_msat == 40_000
    assert (await ledger.balance("alice")).available_msat == 50_000
    await ledger.credit_pool(10_000, "zap:1")
    assert (await ledger.decide("s2", "alice", 40_000)).absorb_msat == 10_000
    f = await ledger.fail("s2", "work failed")  # the reservation and the hold both return
    assert f.released_msat == 40_000
    assert (await ledger.balance("alice")).available_msat == 50_000
    assert (await ledger.pool_status()).available_msat == 10_000
    with pytest.raises(IllegalTransition):
        await ledger.settle("s1", 1)
    await assert_invariants(db, LIMITS)


async def test_two_sessions_cannot_overdraw(ledger: Ledger, db: Database) -> None:
    await ledger.credit_balance("alice", 50_000, "pay:topup", "topup")
    assert (await ledger.decide("s1", "alice", 30_000)).serve is Serve.SESSION
    assert (await ledger.decide("s2", "alice", 30_000)).serve is Serve.GATE
    with pytest.raises(InvalidAmount):
        await ledger.settle("s1", 30_001)
    await assert_invariants(db, LIMITS)


async def test_racing_decides_never_hold_one_balance_twice(
        db_location: str, clock: ManualClock) -> None:
    """Two ledgers on one file (two writers) and many tasks decide for one balance at once:
    it is held at most as many times as it covers the estimate."""
    a, b = await Database.open(db_location), await Database.open(db_location)
    la, lb = Ledger(a, LIMITS, clock=clock), Ledger(b, LIMITS, clock=clock)
    await la.credit_balance("alice", 100_000, "pay:topup", "topup")
    decisions = await asyncio.gather(*(lg.decide(f"s{i}", "alice", 30_000)
                                       for i, lg in enumerate([la, lb] * 20)))
    sessions = [d for d in decisions if d.serve is Serve.SESSION]
    assert len(sessions) == 3
    assert all(d.serve is Serve.GATE for d in decisions if d not in sessions)
    view = await la.balance("alice")
    assert (view.available_msat, view.held_msat) == (10_000, 90_000)
    await assert_invariants(a, LIMITS)
    await a.close()
    await b.close()


async def test_dry_run_answers_session_and_writes_nothing(
        db_location: str, clock: ManualClock) -> None:
    db = await Database.open(db_location)
    ledger = Ledger(db, LIMITS, clock=clock)
    await ledger.credit_balance("alice", 50_000, "pay:topup", "topup")
    before = await state_digest(db)
    dry = await ledger.decide_dry_run("alice", 40_000)
    assert (dry.serve, dry.hold_msat, dry.job_id) == (Serve.SESSION, 40_000, "")
    assert await state_digest(db) == before
    real = await ledger.decide("s1", "alice", 40_000)
    assert (real.serve, real.hold_msat) == (dry.serve, dry.hold_msat)
    await db.close()
