"""``timmy demo --plain`` as a subprocess: every scripted step answered over a real relay, the
ledger check passed, and no process or file of the demo left behind (also after a SIGINT)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600

pytestmark = pytest.mark.slow


def _start(tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the demo's directory goes under tmp_path
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "demo", "--plain"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _relay_group(out: str) -> int:
    found = re.search(r"^relay: ws://127\.0\.0\.1:\d+ \(process group (\d+)\)", out, re.M)
    assert found is not None, out
    return int(found.group(1))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _assert_nothing_left(tmp_path: Path, relay_group: int) -> None:
    assert not _group_alive(relay_group), "a relay process outlived the demo"
    assert list(tmp_path.glob("timmy-demo-*")) == [], "the demo's directory was not removed"


def test_demo_plain_runs_every_step(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, out
    assert "NOT REAL MONEY" in out
    steps = re.findall(r"^== (\d)\.", out, re.M)
    assert steps == ["1", "2", "3", "4", "5", "6"], out
    # every DM of the asker got its answer: each step's section has an agent line
    sections = re.split(r"^== ", out, flags=re.M)[1:]
    for section in sections[:6]:
        assert re.search(r"^asker:", section, re.M), section
        assert re.search(r"^agent:", section, re.M), section
    free, partial, _, balance, failing, refund = sections[:6]
    assert "free: the pool paid" in free
    assert "asker's jobs: free/done" in free
    assert re.search(r"^wallet: .*succeeded", partial, re.M), partial
    assert "partial/done" in partial
    assert "Balance:" in balance
    # the work of a paid question fails for real (the model server is down) and is refunded
    assert re.search(r"^wallet: .* pays the invoice of (\d+) sats?: succeeded", failing, re.M)
    paid = re.search(r"invoice of (\d+) sat", failing)
    assert paid is not None
    assert "Sorry, I could not answer: cannot connect to the backend" in failing, failing
    assert re.search(rf"Refund: {paid.group(1)} sats? waiting for you", failing), failing
    assert re.search(r"^ledger: asker's jobs: .*/failed", failing, re.M), failing
    assert re.search(rf"Refund of {paid.group(1)} sats? paid\.", refund), refund
    assert "refunds owed 0 sats" in refund, refund
    assert "ledger check: ok" in out
    _assert_nothing_left(tmp_path, _relay_group(out))


def test_demo_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # wait until the agent is up and the first DM is sent
        seen.append(line)
        if line.startswith("asker:"):
            break
    assert any(line.startswith("agent: npub") for line in seen), "".join(seen)
    group = _relay_group("".join(seen))
    assert _group_alive(group), "the relay should be running by now"
    os.kill(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 130, "".join(seen) + rest
    _assert_nothing_left(tmp_path, group)
