"""Crash safety: a writer killed with SIGKILL at random points, many times, loses nothing acked."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from storage import Database
from tests.storage.support import assert_invariants, raw
from tests.storage.worker import CRASH_LIMITS

REPO = Path(__file__).resolve().parents[2]
RUNS = 12


def _run_and_kill(path: str, run: int, rng: random.Random,
                  awaited: tuple[str, ...] = ()) -> list[str]:
    """Start a writer, let it write a random while (at least one ack, and one ack of each kind
    in ``awaited``: whatever the engine's speed, those paths are exercised), SIGKILL it; its
    acks."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.storage.worker", "crash", path,
                             str(run)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    acks: list[str] = []
    first = threading.Event()
    missing = set(awaited)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("ACK "):
                acks.append(line[4:].strip())
                missing.difference_update([k for k in awaited if acks[-1].startswith(k)])
                if not missing:
                    first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert first.wait(120), f"the writer never acknowledged a write (awaited {awaited})"
    time.sleep(rng.uniform(0.0, 0.4))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    reader.join(timeout=30)
    return acks


def test_sigkill_loses_no_acknowledged_transfer(db_location: str) -> None:
    path = db_location
    rng = random.Random(20261123)
    acked: list[str] = []
    for run in range(RUNS):
        awaited = ("payout:", "top:") if run == 0 else ()  # the longest paths, at least once
        acked += _run_and_kill(path, run, rng, awaited)

        async def verify() -> None:
            db = await Database.open(path)  # SQLite: recovery from the WAL happens here
            await assert_invariants(db, CRASH_LIMITS)
            await db.close()

        asyncio.run(verify())
        with raw(path) as conn:
            keys = {k for (k,) in conn.execute("SELECT key FROM operations")}
            transfers = {k for (k,) in conn.execute("SELECT key FROM transfers")}
            paid_payouts = {k for (k,) in conn.execute(
                "SELECT key FROM payouts WHERE state = 'paid'")}
        missing = [k for k in acked if k not in (paid_payouts if k.startswith("payout:") else keys)]
        assert missing == [], f"run {run}: acknowledged but lost: {missing[:5]}"
        lost_zaps = [k for k in acked if k.startswith("zap:") and k not in transfers]
        assert lost_zaps == [], f"run {run}: acknowledged zap transfers lost: {lost_zaps[:5]}"
    assert len(acked) > RUNS * 10
    assert any(k.startswith("payout:") for k in acked)  # the refund payouts were exercised
    assert any(k.startswith("top:") for k in acked)  # and the sessions
