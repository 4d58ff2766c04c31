"""decide_dry_run: the same answer as decide, and the database file stays byte-for-byte the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import Database, IdempotencyConflict, InvalidInput, Ledger, Reason, Serve
from tests.storage.conftest import LIMITS
from tests.storage.support import ManualClock, state_digest


async def test_dry_run_writes_nothing(db_location: str, clock: ManualClock) -> None:
    db = await Database.open(db_location)
    ledger = Ledger(db, LIMITS, clock=clock)
    await ledger.credit_pool(50_000, "zap:1")
    await ledger.decide("j1", "alice", 80_000)
    before = await state_digest(db)
    await db.close()

    db = await Database.open(db_location)
    ledger = Ledger(db, LIMITS, clock=clock)
    answers = [await ledger.decide_dry_run(pk, est)
               for pk in ("alice", "bob", "carol") for est in (1, 10_000, 50_000, 500_000)]
    if db.engine == "sqlite":
        wal = Path(db_location + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0
    assert await state_digest(db) == before
    await db.close()

    # and the answers are what decide says
    db = await Database.open(db_location)
    ledger = Ledger(db, LIMITS, clock=clock)
    dry = await ledger.decide_dry_run("bob", 10_000)
    real = await ledger.decide("j2", "bob", 10_000)
    assert (dry.serve, dry.reason, dry.absorb_msat, dry.work_amount_msat) == (
        real.serve, real.reason, real.absorb_msat, real.work_amount_msat)
    assert {a.serve for a in answers} == {Serve.FREE, Serve.PARTIAL}
    await db.close()


async def test_paid_only_decisions_never_touch_the_pool(db_location: str,
                                                        clock: ManualClock) -> None:
    db = await Database.open(db_location)
    ledger = Ledger(db, LIMITS, clock=clock)
    await ledger.credit_pool(50_000, "zap:1")
    dry = await ledger.decide_dry_run("dave", 1_000, subsidised=False)
    real = await ledger.decide("j1", "dave", 1_000, subsidised=False)
    assert (dry.serve, dry.reason, dry.absorb_msat) == (Serve.GATE, Reason.PAID_ONLY, 0)
    assert (real.serve, real.absorb_msat, real.work_amount_msat) == (Serve.GATE, 0, 1_000)
    assert (await ledger.pool_status()).available_msat == 50_000
    assert await ledger.decide("j1", "dave", 1_000, subsidised=False) == real  # a repeat
    with pytest.raises(IdempotencyConflict):
        await ledger.decide("j1", "dave", 1_000)  # the same job, other terms
    await ledger.credit_balance("erin", 5_000, "gift")
    session = await ledger.decide("j2", "erin", 1_000, subsidised=False)
    assert (session.serve, session.absorb_msat) == (Serve.SESSION, 0)
    with pytest.raises(InvalidInput):
        await ledger.decide("j3", "erin", 1_000, subsidised=1)  # type: ignore[arg-type]
    assert (await ledger.decide("j4", "frank", 1_000)).serve is Serve.FREE  # others as before
    await db.close()
