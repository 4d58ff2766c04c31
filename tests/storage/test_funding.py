"""Funding: zaps and operator top-ups to the pool, payments to balances — each counted once."""

from __future__ import annotations

import pytest

from storage import Credit, Database, IdempotencyConflict, InvalidInput, Ledger
from tests.storage.conftest import LIMITS
from tests.storage.support import assert_invariants


async def test_a_zap_is_counted_once_however_often_it_arrives(
        ledger: Ledger, db: Database) -> None:
    first = await ledger.credit_pool(21_000, "zap:h1", source="zap", zapper_pubkey="zz")
    for _ in range(3):  # three relays, a restart
        assert await ledger.credit_pool(21_000, "zap:h1", source="zap", zapper_pubkey="zz") == first
    await ledger.credit_pool(1_000, "zap:h2", source="zap", zapper_pubkey="zz")
    await ledger.credit_pool(5_000, "zap:h3", source="zap", zapper_pubkey="yy")
    await ledger.credit_pool(100_000, "operator:2026-01-01", source="operator")
    status = await ledger.pool_status()
    assert (status.available_msat, status.total_in_msat) == (127_000, 127_000)
    assert (status.zap_count, status.zapper_count) == (3, 2)
    balances = await assert_invariants(db, LIMITS)
    assert (balances["zaps_in"], balances["operator"], balances["pool"]) == (
        -27_000, -100_000, 127_000)


async def test_recent_zaps_with_their_notes(ledger: Ledger, db: Database) -> None:
    await ledger.credit_pool(21_000, "zap:h1", zapper_pubkey="zz", note="keep it free")
    await ledger.credit_pool(9_000, "operator:x", source="operator", note="not a zap")
    await ledger.credit_pool(1_000, "zap:h2", zapper_pubkey="yy")
    # a credit recorded before notes were kept: its stored result has no note
    await db.write(lambda conn: conn.execute(
        "UPDATE operations SET result = ? WHERE key = 'zap:h2'",
        ('{"key":"zap:h2","account":"pool","amount_msat":1000}',)))
    assert await ledger.credit_pool(1_000, "zap:h2", zapper_pubkey="yy") == Credit(
        "zap:h2", "pool", 1_000)
    recent = await ledger.recent_zaps()
    assert [(z.funder, z.amount_msat, z.note) for z in recent] == [
        ("yy", 1_000, ""), ("zz", 21_000, "keep it free")]
    assert [z.funder for z in await ledger.recent_zaps(1)] == ["yy"]
    for bad in ("line\nbreak", "x" * 1001):
        with pytest.raises(InvalidInput):
            await ledger.credit_pool(1_000, "zap:h3", zapper_pubkey="yy", note=bad)
    assert (await ledger.pool_status()).jobs_today == 0


async def test_a_key_cannot_be_reused_for_something_else(ledger: Ledger, db: Database) -> None:
    await ledger.credit_pool(21_000, "zap:h1", zapper_pubkey="zz")
    with pytest.raises(IdempotencyConflict):
        await ledger.credit_pool(22_000, "zap:h1", zapper_pubkey="zz")
    with pytest.raises(IdempotencyConflict):
        await ledger.credit_pool(21_000, "zap:h1", source="operator")
    with pytest.raises(IdempotencyConflict):
        await ledger.credit_balance("alice", 21_000, "zap:h1", "topup")
    assert (await ledger.pool_status()).available_msat == 21_000
    await assert_invariants(db, LIMITS)


async def test_balance_credits_are_counted_once(ledger: Ledger, db: Database) -> None:
    c = await ledger.credit_balance("alice", 50_000, "pay:topup1", "topup")
    assert await ledger.credit_balance("alice", 50_000, "pay:topup1", "topup") == c
    await ledger.credit_balance("alice", 1_000, "pay:topup2", "topup")
    view = await ledger.balance("alice")
    assert (view.available_msat, view.held_msat, view.pending_refund_msat) == (51_000, 0, 0)
    assert (await ledger.balance("nobody")).available_msat == 0
    balances = await assert_invariants(db, LIMITS)
    assert balances["lightning_in"] == -51_000
