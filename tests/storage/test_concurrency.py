"""Concurrency: hundreds of tasks on one database, and several OS processes on one database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from storage import Database, Ledger, Limits, PaymentVerdict, Serve, check, whole_sats_up
from tests.storage.support import ManualClock, assert_invariants
from tests.storage.worker import HAMMER_LIMITS, SHARED_JOBS, SHARED_ZAPS, ZAP_MSAT

REPO = Path(__file__).resolve().parents[2]
LIMITS = Limits(daily_free_msat=3_000, daily_free_jobs=4)


async def test_200_tasks_race_for_the_pool(db_location: str, clock: ManualClock) -> None:
    db = await Database.open(db_location)
    ledger = Ledger(db, LIMITS, clock=clock)
    # 20 zaps delivered 5 times each (several relays): 20 000 msat, counted once
    await asyncio.gather(*(ledger.credit_pool(1_000, f"zap:{i % 20}", zapper_pubkey=f"z{i % 20}")
                           for i in range(100)))
    assert (await ledger.pool_status()).available_msat == 20_000

    async def ask(i: int) -> None:
        job = f"job{i}"
        d = await ledger.decide(job, f"user{i % 25}", 1_000)
        if d.serve is Serve.FREE:
            if i % 4 == 0:
                await ledger.fail(job, "work failed")
            else:
                await ledger.settle(job, 600)

    async def pay(i: int) -> None:
        job = f"gate{i % 10}"
        d = await ledger.decide(job, "payer", 5_000_000)  # the same job from 10 tasks
        invoice = whole_sats_up(d.work_amount_msat)
        await ledger.attach_invoice(job, f"h{i % 10}", invoice, clock.now + 600)
        out = await ledger.confirm_payment(f"h{i % 10}", invoice, f"pay:h{i % 10}")
        assert out.result in (PaymentVerdict.PAID, PaymentVerdict.TERMS_CHANGED)

    await asyncio.gather(*(ask(i) for i in range(200)), *(pay(i) for i in range(100)))
    balances = await assert_invariants(db, LIMITS)
    assert balances["zaps_in"] == -20_000
    assert balances["pool"] + balances["subsidy"] == 20_000
    jobs = [await ledger.job(f"gate{k}") for k in range(10)]
    assert -balances["lightning_in"] == sum(j.paid_msat for j in jobs)
    assert db.batches < db.batched_ops  # operations were committed together
    await db.close()


async def test_two_databases_on_one_location(db_location: str, clock: ManualClock) -> None:
    a = await Database.open(db_location)
    b = await Database.open(db_location)
    la, lb = Ledger(a, LIMITS, clock=clock), Ledger(b, LIMITS, clock=clock)
    await asyncio.gather(*(lg.credit_pool(500, f"zap:{i % 30}")
                           for i in range(120) for lg in (la, lb)))
    decisions = await asyncio.gather(*(lg.decide(f"j{i}", f"u{i % 40}", 700)
                                       for i, lg in enumerate([la, lb] * 100)))
    reserved = sum(d.absorb_msat for d in decisions if d.serve is Serve.FREE)
    assert reserved <= 15_000
    report = await check(a, LIMITS)
    assert report.ok, report.violations
    assert report.balances["zaps_in"] == -15_000
    await a.close()
    await b.close()


def test_four_processes_hammer_one_database(db_location: str) -> None:
    path = db_location
    procs = [subprocess.Popen([sys.executable, "-m", "tests.storage.worker", "hammer", path,
                               str(p), "150"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for p in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert out.strip() == "DONE"

    async def verify() -> None:
        db = await Database.open(path)
        balances = await assert_invariants(db, HAMMER_LIMITS)
        assert balances["zaps_in"] == -SHARED_ZAPS * ZAP_MSAT  # each zap once, not 4 times
        ledger = Ledger(db, HAMMER_LIMITS)
        paid = [await ledger.job(f"shared-{k}") for k in range(SHARED_JOBS)]
        assert -balances["lightning_in"] == sum(j.paid_msat for j in paid)
        assert all(j.paid_msat > 0 for j in paid)  # each shared job paid exactly once
        assert balances["pool"] + balances["subsidy"] == SHARED_ZAPS * ZAP_MSAT
        status = await ledger.pool_status()
        assert (status.zap_count, status.zapper_count) == (SHARED_ZAPS, 7)
        await db.close()

    asyncio.run(verify())
