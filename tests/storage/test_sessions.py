"""Sessions: prepaid balance holds the estimate, charges actual minus subsidy."""

from __future__ import annotations

import pytest

from storage import Database, IllegalTransition, InvalidAmount, Ledger
from tests.storage.conftest import LIMITS
from tests.storage.support import assert_invariants


async def test_session_with_subsidy(ledger: Ledger, db: Database) -> None:
    await ledger.credit_balance("alice", 50_000, "pay:topup", "topup")
    await ledger.credit_pool(10_000, "zap:1")
    hold = await ledger.session_start("s1", "alice", 40_000)
    assert (hold.held, hold.hold_msat, hold.advisory_absorb_msat, hold.balance_msat) == (
        True, 40_000, 10_000, 10_000)
    view = await ledger.balance("alice")
    assert (view.available_msat, view.held_msat) == (10_000, 40_000)
    s = await ledger.session_settle("s1", 25_000)
    assert (s.absorbed_msat, s.charged_msat, s.released_msat) == (10_000, 15_000, 25_000)
    assert (await ledger.balance("alice")).available_msat == 35_000
    assert (await ledger.allowance("alice")).free_msat_left == 90_000
    balances = await assert_invariants(db, LIMITS)
    assert (balances["revenue"], balances["subsidy"], balances["pool"]) == (15_000, 10_000, 0)


async def test_session_pool_empty_at_grant_time_charges_full_cost(
        ledger: Ledger, db: Database) -> None:
    await ledger.credit_balance("alice", 50_000, "pay:topup", "topup")
    await ledger.credit_pool(10_000, "zap:1")
    hold = await ledger.session_start("s1", "alice", 40_000)
    assert hold.advisory_absorb_msat == 10_000
    await ledger.decide("drain", "bob", 10_000)  # the pool is gone by the time the work ends
    s = await ledger.session_settle("s1", 25_000)
    assert (s.absorbed_msat, s.charged_msat, s.released_msat) == (0, 25_000, 15_000)
    assert (await ledger.balance("alice")).available_msat == 25_000
    assert (await ledger.allowance("alice")).free_msat_left == 100_000
    await assert_invariants(db, LIMITS)


async def test_session_subsidy_is_capped_by_actual(ledger: Ledger, db: Database) -> None:
    await ledger.credit_balance("alice", 50_000, "pay:topup", "topup")
    await ledger.credit_pool(40_000, "zap:1")
    await ledger.session_start("s1", "alice", 40_000)
    s = await ledger.session_settle("s1", 5_000)
    assert (s.absorbed_msat, s.charged_msat, s.released_msat) == (5_000, 0, 40_000)
    assert (await ledger.balance("alice")).available_msat == 50_000
    await assert_invariants(db, LIMITS)


async def test_session_needs_the_whole_estimate(ledger: Ledger, db: Database) -> None:
    await ledger.credit_balance("alice", 5_000, "pay:topup", "topup")
    before = await assert_invariants(db, LIMITS)
    hold = await ledger.session_start("s1", "alice", 40_000)
    assert (hold.held, hold.balance_msat) == (False, 5_000)
    assert await assert_invariants(db, LIMITS) == before
    await ledger.credit_balance("alice", 35_000, "pay:topup2", "topup")
    assert (await ledger.session_start("s1", "alice", 40_000)).held  # retry after a top-up


async def test_session_failure_releases_the_hold(ledger: Ledger, db: Database) -> None:
    await ledger.credit_balance("alice", 50_000, "pay:topup", "topup")
    await ledger.session_start("s1", "alice", 40_000)
    f = await ledger.session_fail("s1")
    assert f.released_msat == 40_000
    assert (await ledger.balance("alice")).available_msat == 50_000
    with pytest.raises(IllegalTransition):
        await ledger.session_settle("s1", 1)
    await assert_invariants(db, LIMITS)


async def test_two_sessions_cannot_overdraw(ledger: Ledger, db: Database) -> None:
    await ledger.credit_balance("alice", 50_000, "pay:topup", "topup")
    assert (await ledger.session_start("s1", "alice", 30_000)).held
    assert not (await ledger.session_start("s2", "alice", 30_000)).held
    with pytest.raises(InvalidAmount):
        await ledger.session_settle("s1", 30_001)
    await assert_invariants(db, LIMITS)
