"""Ledger benchmark: durable settlements per second on both engines, beside their raw commit rates.

Run: ``.venv/bin/python bench/ledger.py [--seconds S] [--dir DIR] [--engines sqlite,postgresql]``.
Prints, for each engine, for the free path (decide + settle) and the paid partial path (decide +
attach_invoice + confirm_payment + start + settle), settlements per second with 1 and with 64
concurrent callers in one process, each settlement durably committed before its caller continues
(SQLite ``synchronous=FULL``; PostgreSQL ``synchronous_commit=on``, the server fsyncing); then the
free path with 64 callers in each of 1 and 4 OS processes sharing the database (replicas); and,
measured in the same run, each engine's raw rate of single-row durable commits (SQLite: one
``synchronous=FULL`` INSERT per transaction; PostgreSQL: one INSERT + COMMIT per round trip). The
PostgreSQL engine runs on a private cluster the benchmark starts (fsync on) and stops, measured
twice, each labelled: over TCP on 127.0.0.1 (``postgresql``: as replicas on other hosts reach
it), then over the server's Unix socket (``postgresql/unix``: replicas on the server's own host,
``?host=/run/postgresql``); ``--postgresql-over tcp`` measures TCP alone. The last lines are the
figures: ``durable_settlements_per_s=N baseline_fsync_per_s=M`` (SQLite, free path, 64 callers),
``postgresql_settlements_per_s=N postgresql_commits_per_s=M postgresql_4_processes_per_s=P``
(TCP) and ``postgresql_unix_settlements_per_s=N`` (the Unix socket).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from storage import Database, Ledger, Limits, Serve, check, whole_sats_up

if TYPE_CHECKING:
    from tests.fixtures.postgres import PostgresCluster

REPO = Path(__file__).resolve().parents[1]
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


def postgres_commits_per_s(url: str, seconds: float, table: str) -> float:
    """Single-row INSERT + COMMIT round trips per second (``synchronous_commit=on``), into a new
    ``table``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute(f"CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, v BIGINT NOT NULL)")
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            conn.execute(f"INSERT INTO {table} (v) VALUES (%s)", (n,))  # noqa: S608
            n += 1
        return n / (time.perf_counter() - start)


async def measure(location: str, callers: int, seconds: float,
                  settle_one: Callable[[Ledger, str], Awaitable[None]],
                  label: str = "") -> tuple[float, float]:
    """Settlements per second and mean ops per commit, with ``callers`` concurrent loops."""
    db = await Database.open(location)
    ledger = Ledger(db, LIMITS, clock=lambda: NOW)
    await ledger.credit_pool(10**15, f"op:{label}:{callers}", source="operator")
    ids = itertools.count()
    done = 0
    deadline = time.perf_counter() + seconds
    b0, o0 = db.batches, db.batched_ops

    async def caller(c: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await settle_one(ledger, f"{label}-{callers}-{c}-{next(ids)}")
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(callers)))
    elapsed = time.perf_counter() - start
    per_commit = (db.batched_ops - o0) / max(1, db.batches - b0)
    report = await check(db, LIMITS)
    assert report.ok, report.violations
    await db.close()
    return done / elapsed, per_commit


async def worker(location: str, label: str, callers: int, start_at: float,
                 seconds: float) -> None:
    """One of several processes: free settlements from ``start_at`` (wall clock) for
    ``seconds``; prints ``DONE <count>``."""
    db = await Database.open(location)
    ledger = Ledger(db, LIMITS, clock=lambda: NOW)
    await ledger.credit_pool(10**15, f"op:{label}", source="operator")
    await asyncio.sleep(max(0.0, start_at - time.time()))
    deadline = time.perf_counter() + seconds
    ids = itertools.count()
    done = 0

    async def caller(c: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await free_settlement(ledger, f"{label}-{c}-{next(ids)}")
            done += 1

    await asyncio.gather(*(caller(c) for c in range(callers)))
    await db.close()
    print(f"DONE {done}", flush=True)


def processes_rate(location: str, processes: int, callers: int, seconds: float,
                   label: str) -> float:
    """Free settlements per second of ``processes`` OS processes, ``callers`` each, together."""
    start_at = time.time() + 3.0  # every process opened and ready
    procs = [subprocess.Popen(
        [sys.executable, "-m", "bench.ledger", "--worker", location, f"{label}-p{p}",
         str(callers), str(start_at), str(seconds)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for p in range(processes)]
    total = 0
    for proc in procs:
        out, err = proc.communicate(timeout=seconds + 300)
        if proc.returncode != 0:
            raise RuntimeError(f"a worker failed: {err.strip()[-500:]}")
        total += int(out.split()[-1])
    return total / seconds


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


async def engine_rates(name: str, new_location: Callable[[str], str],
                       seconds: float) -> dict[str, float]:
    """One engine's figures: each path with 1 and 64 callers, then 1 and 4 processes."""
    results: dict[str, float] = {}
    for path, fn in (("free", free_settlement), ("partial", partial_settlement)):
        for callers in (1, 64):
            label = f"{path}-{callers}"
            rate, per_commit = await measure(new_location(label), callers, seconds, fn, label)
            results[label] = rate
            print(f"{name:15} {path:7} path, {callers:2} caller(s): {rate:8.0f} settlements/s"
                  f"  ({per_commit:5.1f} operations per commit)")
    for processes in (1, 4):
        label = f"procs-{processes}"
        location = new_location(label)
        await (await Database.open(location)).close()  # created and migrated before the race
        rate = processes_rate(location, processes, 64, seconds, label)
        results[label] = rate
        print(f"{name:15} free    path, {processes} process(es) × 64 callers: {rate:8.0f}"
              " settlements/s")
    return results


def _schemas(cluster: PostgresCluster, unix_socket: bool) -> Callable[[str], str]:
    """A fresh schema's URL per measurement (over TCP or the Unix socket)."""
    return lambda _label: cluster.new_schema(unix_socket=unix_socket)


async def main(seconds: float, where: str, engines: list[str], transports: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="ledger-bench-", dir=where) as tmp:
        directory = Path(tmp)
        lite: dict[str, float] = {}
        pg: dict[str, dict[str, float]] = {}  # per transport: "tcp", "unix"
        pg_commits: dict[str, float] = {}
        baseline = 0.0
        if "sqlite" in engines:
            baseline = baseline_fsync_per_s(directory, seconds)
            print("raw synchronous=FULL single-row commits (WAL, as the ledger): "
                  f"{baseline:8.0f}/s")
            rollback = baseline_fsync_per_s(directory, min(seconds, 2.0), "DELETE")
            print(f"raw synchronous=FULL single-row commits (rollback journal):  {rollback:8.0f}/s")
            lite = await engine_rates("sqlite", lambda label: str(directory / f"{label}.sqlite3"),
                                      seconds)
        if "postgresql" in engines:
            from tests.fixtures.postgres import PostgresCluster  # pytest: only when measured

            cluster = PostgresCluster.start(settings="-c fsync=on -c synchronous_commit=on")
            try:
                for transport in transports:
                    unix = transport == "unix"
                    name = "postgresql/unix" if unix else "postgresql"
                    over = "the Unix socket" if unix else "TCP"
                    pg_commits[transport] = postgres_commits_per_s(
                        cluster.url("postgres", unix_socket=unix), seconds, f"baseline_{transport}")
                    print(f"raw PostgreSQL INSERT + COMMIT round trips over {over}"
                          f" (synchronous_commit=on): {pg_commits[transport]:8.0f}/s")
                    pg[transport] = await engine_rates(name, _schemas(cluster, unix), seconds)
            finally:
                cluster.stop()
        for transport, rates in pg.items():
            if lite:
                print(f"postgresql / sqlite, free path, 64 callers, over {transport.upper()}: "
                      f"{rates['free-64'] / lite['free-64']:.2f} (target >= 0.5)")
        for name, r in (("sqlite", lite), *((f"postgresql over {t.upper()}", pg[t]) for t in pg)):
            if r:
                print(f"{name}: 4 processes / 1 process: {r['procs-4'] / r['procs-1']:.2f}")
        if lite:
            print(f"free path, 64 callers / raw single-row commit rate: "
                  f"{lite['free-64'] / baseline:.2f}")
            print(f"durable_settlements_per_s={lite['free-64']:.0f} "
                  f"baseline_fsync_per_s={baseline:.0f}")
        if "tcp" in pg:
            print(f"postgresql_settlements_per_s={pg['tcp']['free-64']:.0f} "
                  f"postgresql_commits_per_s={pg_commits['tcp']:.0f} "
                  f"postgresql_4_processes_per_s={pg['tcp']['procs-4']:.0f}")
        if "unix" in pg:
            print(f"postgresql_unix_settlements_per_s={pg['unix']['free-64']:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    parser.add_argument("--dir", default=".", help="directory of the SQLite files")
    parser.add_argument("--engines", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql")
    parser.add_argument("--postgresql-over", default="tcp,unix",
                        help="comma-separated: tcp (127.0.0.1), unix (the server's Unix socket)")
    parser.add_argument("--worker", nargs=5, metavar=("LOCATION", "LABEL", "CALLERS", "START_AT",
                                                      "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        location, label, callers, start_at, secs = args.worker
        asyncio.run(worker(location, label, int(callers), float(start_at), float(secs)))
    else:
        transports = args.postgresql_over.split(",")
        if not transports or not set(transports) <= {"tcp", "unix"}:
            parser.error("--postgresql-over takes tcp, unix or both")
        asyncio.run(main(args.seconds, args.dir, args.engines.split(","), transports))
