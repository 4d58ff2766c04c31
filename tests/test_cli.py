"""The ``timmy`` command line: ``timmy ledger check --db PATH``."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import build_parser, main
from storage import Database, Ledger, Limits


def _make_ledger(path: Path) -> None:
    async def run() -> None:
        db = await Database.open(path)
        ledger = Ledger(db, Limits(daily_free_msat=50_000, daily_free_jobs=3))
        await ledger.credit_pool(80_000, "zap:1", zapper_pubkey="z")
        await ledger.decide("j1", "alice", 30_000)
        await ledger.settle("j1", 20_000)
        await db.close()

    asyncio.run(run())


def test_check_ok_prints_balances(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "l.db"
    _make_ledger(path)
    assert main(["ledger", "check", "--db", str(path)]) == 0
    out = capsys.readouterr().out
    assert "pool" in out and "60000 msat" in out
    assert "subsidy" in out and "20000 msat" in out
    assert out.strip().endswith("ok")


def test_check_with_limits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "l.db"
    _make_ledger(path)
    args = ["ledger", "check", "--db", str(path), "--daily-free-jobs", "3"]
    assert main([*args, "--daily-free-msat", "50000"]) == 0
    assert main([*args, "--daily-free-msat", "10000"]) == 1
    assert "daily limit exceeded" in capsys.readouterr().out


def test_check_violation_exits_non_zero(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "l.db"
    _make_ledger(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE accounts SET credits_posted = credits_posted + 5 WHERE id = 'pool'")
    conn.commit()
    conn.close()
    assert main(["ledger", "check", "--db", str(path)]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION: account pool" in out


def test_check_missing_or_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", "check", "--db", str(tmp_path / "nope.db")]) == 2
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 1000)
    assert main(["ledger", "check", "--db", str(bad)]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ledger", "check"])  # --db is required


def test_console_script(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    _make_ledger(path)
    timmy = Path(sys.executable).with_name("timmy")
    done = subprocess.run([str(timmy), "ledger", "check", "--db", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "zaps_in" in done.stdout


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
              ) -> list[tuple[str, ...]]:
    """Every command path of the parser (``("ledger", "check")``...)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*prefix, name))
                found += _commands(sub, (*prefix, name))
    return found


def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _commands(build_parser())
    assert {"run", "demo", "keygen", "ask", "estimate", "pool", "jobs", "refunds", "relays",
            "config", "ledger", ("ledger", "check")} <= {c[0] if len(c) == 1 else c
                                                         for c in commands}
    for command in commands:
        with pytest.raises(SystemExit) as exited:
            main([*command, "--help"])
        assert exited.value.code == 0
        out = capsys.readouterr().out
        assert "example" in out.lower() and f"timmy {' '.join(command)}" in out, (command, out)
