"""``timmy jobs``, ``timmy refunds`` on a real SQLite ledger and ``timmy relays`` against a real
relay and an unreachable one (bot/operator_reads.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.cli import main
from storage import Database, Ledger, Limits
from tests.fixtures.relay import RelayFactory

ALICE, BOB = "a" * 64, "b" * 64


def _ledger(path: Path) -> None:
    """Two gate jobs paid 10 sats: alice's cost 4 (6 sats owed back), bob's cost all 10."""

    async def run() -> None:
        db = await Database.open(path)
        ledger = Ledger(db, Limits(daily_free_msat=0, daily_free_jobs=0))
        for job, pubkey, cost in (("job-alice", ALICE, 4_000), ("job-bob", BOB, 10_000)):
            await ledger.decide(job, pubkey, 10_000)
            await ledger.attach_invoice(job, f"hash-{job}", 10_000, 2_000_000_000)
            await ledger.confirm_payment(job, 10_000, f"pay:{job}")
            await ledger.start(job)
            await ledger.settle(job, cost)
        await db.close()

    asyncio.run(run())


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "ledger.sqlite3"
    _ledger(path)
    return str(path)


def test_jobs_lists_and_filters(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "job-alice" in out and "job-bob" in out and "2 job(s)" in out
    assert main(["jobs", "--db", db, "--pubkey", ALICE, "--state", "done"]) == 0
    out = capsys.readouterr().out
    assert "job-alice" in out and "job-bob" not in out and "1 job(s)" in out
    assert main(["jobs", "--db", db, "--state", "failed"]) == 0
    assert "0 job(s)" in capsys.readouterr().out


def test_refunds_owed(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["refunds", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "job-alice" in out and "job-bob" not in out
    assert "owed now: 6 sats" in out
    assert main(["refunds", "--db", db, "--pubkey", BOB]) == 0
    assert "owed now: 0 sats" in capsys.readouterr().out


def test_bad_input_is_exit_2(tmp_path: Path, db: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "--db", str(tmp_path / "missing.sqlite3")]) == 2
    assert "no ledger" in capsys.readouterr().err
    assert main(["refunds", "--db", db, "--pubkey", "npub1nope"]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_relays_real_and_unreachable(relay_factory: RelayFactory,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    open_relay, auth_relay = relay_factory(), relay_factory(auth=True)
    assert main(["relays", "--relay", open_relay.url, "--relay", auth_relay.url]) == 0
    out = capsys.readouterr().out
    assert f"{open_relay.url}: ok, round trip" in out
    assert "NIP-11: test relay" in out and "2 of 2 relays answered" in out
    assert main(["relays", "--relay", open_relay.url, "--relay", "ws://127.0.0.1:9",
                 "--timeout", "5"]) == 1
    out = capsys.readouterr().out
    assert "ws://127.0.0.1:9: UNREACHABLE" in out and "1 of 2 relays answered" in out
