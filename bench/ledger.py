"""Ledger benchmark: durable settlements per second, beside this machine's raw fsync rate.

Run: ``.venv/bin/python bench/ledger.py [--seconds S] [--dir DIR]``. Prints, for the free path
(decide + settle) and the paid partial path (decide + attach_invoice + confirm_payment +
settle), settlements per second with 1 and with 64 concurrent callers, each settlement durably
committed (``synchronous=FULL``) before its caller continues; and, measured in the same run, the
raw rate of single-row ``synchronous=FULL`` commits (one fsync each) on the same disk. The last
line is the figure: ``durable_settlements_per_s=N baseline_fsync_per_s=M`` (N: free path, 64
callers).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from storage import Database, Ledger, Limits, Serve, check, whole_sats_up

# Every pubkey is new, so its allowance (500 msat) decides: 400 msat → free, 1000 → partial.
LIMITS = Limits(daily_free_msat=500, daily_free_jobs=1_000)
NOW = 1_767_225_600


def baseline_fsync_per_s(directory: Path, seconds: float, journal_mode: str = "WAL") -> float:
    """Single-row ``synchronous=FULL`` commits per second, one after the other."""
    conn = sqlite3.connect(directory / f"baseline-{journal_mode}.sqlite3", isolation_level=None)
    conn.execute(f"PRAGMA journal_mode = {journal_mode}")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES (?)", (n,))
        conn.execute("COMMIT")
        n += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


async def measure(path: Path, callers: int, seconds: float,
                  settle_one: Callable[[Ledger, str], Awaitable[None]]) -> tuple[float, float]:
    """Settlements per second and mean ops per commit, with ``callers`` concurrent loops."""
    db = await Database.open(path)
    ledger = Ledger(db, LIMITS, clock=lambda: NOW)
    await ledger.credit_pool(10**15, f"op:{path.name}:{callers}", source="operator")
    ids = itertools.count()
    done = 0
    deadline = time.perf_counter() + seconds
    b0, o0 = db.batches, db.batched_ops

    async def caller(c: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await settle_one(ledger, f"{callers}-{c}-{next(ids)}")
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(callers)))
    elapsed = time.perf_counter() - start
    per_commit = (db.batched_ops - o0) / max(1, db.batches - b0)
    report = await check(db, LIMITS)
    assert report.ok, report.violations
    await db.close()
    return done / elapsed, per_commit


async def free_settlement(ledger: Ledger, job: str) -> None:
    d = await ledger.decide(job, f"pk-{job}", 400)
    assert d.serve is Serve.FREE
    await ledger.settle(job, 300)


async def partial_settlement(ledger: Ledger, job: str) -> None:
    d = await ledger.decide(job, f"pk-{job}", 1_000)
    assert d.serve is Serve.PARTIAL
    invoice = whole_sats_up(d.work_amount_msat)
    await ledger.attach_invoice(job, f"hash-{job}", invoice, NOW + 600)
    paid = await ledger.confirm_payment(f"hash-{job}", invoice, f"pay:{job}")
    assert paid.job_paid
    await ledger.start(job)
    await ledger.settle(job, 800)


async def main(seconds: float, where: str) -> None:
    with tempfile.TemporaryDirectory(prefix="ledger-bench-", dir=where) as tmp:
        directory = Path(tmp)
        baseline = baseline_fsync_per_s(directory, seconds)
        print(f"raw synchronous=FULL single-row commits (WAL, as the ledger): {baseline:8.0f}/s")
        rollback = baseline_fsync_per_s(directory, min(seconds, 2.0), "DELETE")
        print(f"raw synchronous=FULL single-row commits (rollback journal):  {rollback:8.0f}/s")
        results: dict[tuple[str, int], float] = {}
        for name, fn in (("free", free_settlement), ("partial", partial_settlement)):
            for callers in (1, 64):
                rate, per_commit = await measure(directory / f"{name}-{callers}.sqlite3",
                                                 callers, seconds, fn)
                results[(name, callers)] = rate
                print(f"{name:7} path, {callers:2} caller(s): {rate:8.0f} settlements/s"
                      f"  ({per_commit:5.1f} operations per commit)")
        free64 = results[("free", 64)]
        print(f"free path, 64 callers / raw single-row commit rate: {free64 / baseline:.2f}")
        print(f"durable_settlements_per_s={free64:.0f} baseline_fsync_per_s={baseline:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    parser.add_argument("--dir", default=".", help="directory of the database files")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.dir))
