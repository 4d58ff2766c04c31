"""decide_dry_run: the same answer as decide, and the database file stays byte-for-byte the same."""

from __future__ import annotations

from pathlib import Path

from storage import Database, Ledger, Serve
from tests.storage.conftest import LIMITS
from tests.storage.support import ManualClock, file_digest


async def test_dry_run_writes_nothing(db_path: Path, clock: ManualClock) -> None:
    db = await Database.open(db_path)
    ledger = Ledger(db, LIMITS, clock=clock)
    await ledger.credit_pool(50_000, "zap:1")
    await ledger.decide("j1", "alice", 80_000)
    await db.checkpoint()
    await db.close()
    wal = db_path.with_name(db_path.name + "-wal")
    before = file_digest(db_path)

    db = await Database.open(db_path)
    ledger = Ledger(db, LIMITS, clock=clock)
    answers = [await ledger.decide_dry_run(pk, est)
               for pk in ("alice", "bob", "carol") for est in (1, 10_000, 50_000, 500_000)]
    assert not wal.exists() or wal.stat().st_size == 0
    await db.close()
    assert file_digest(db_path) == before

    # and the answers are what decide says
    db = await Database.open(db_path)
    ledger = Ledger(db, LIMITS, clock=clock)
    dry = await ledger.decide_dry_run("bob", 10_000)
    real = await ledger.decide("j2", "bob", 10_000)
    assert (dry.serve, dry.reason, dry.absorb_msat, dry.work_amount_msat) == (
        real.serve, real.reason, real.absorb_msat, real.work_amount_msat)
    assert {a.serve for a in answers} == {Serve.FREE, Serve.PARTIAL}
    await db.close()
