"""The ledger on PostgreSQL from the command line and the configuration: ``ledger check --db URL``,
``ledger copy`` (proven by equal checks, refused into a non-empty database), and the URL's
password, which is never in the URL and never printed."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import ConfigError, parse_settings
from bot.ledger_location import LedgerLocation, LocationError, parse_location
from bot.secrets import SecretError
from storage import (
    Database,
    Intake,
    Ledger,
    Limits,
    NewRequest,
    Outbox,
    OutgoingEvent,
    StorageFailure,
    check,
)
from tests.fixtures.postgres import PASSWORD, PASSWORD_ROLE, PostgresCluster

SECRET = "hunter2-not-in-any-message"
LIMITS = Limits(daily_free_msat=100_000, daily_free_jobs=5)


async def _populate(location: str) -> None:
    """A ledger with a row in every kind of table: pool, free and paid jobs, a refund paid out
    and one in flight, a balance, a top-up, a request, outbox events, operator state."""
    db = await Database.open(location)
    ledger = Ledger(db, LIMITS, clock=lambda: 1_767_225_600)
    await ledger.credit_pool(100_000, "zap:1", zapper_pubkey="z")
    await ledger.decide("f1", "alice", 30_000)
    await ledger.settle("f1", 20_000)
    gate = Ledger(db, Limits(daily_free_msat=0, daily_free_jobs=0), clock=lambda: 1_767_225_600)
    for job in ("r1", "r2"):
        await gate.decide(job, "carol", 200_000)
        await gate.attach_invoice(job, f"h-{job}", 200_000, 1_767_226_200)
        await gate.confirm_payment(job, 200_000, f"pay:{job}")
        await gate.start(job)
        await gate.settle(job, 4_000)
    p1 = await ledger.begin_payout("r1", "lnbc-1", "po:r1")
    await ledger.confirm_payout(p1.payout_id, "pre-1", 3)
    await ledger.begin_payout("r2", "lnbc-2", "po:r2")
    await ledger.record_topup("dave", "d" * 64, 5_000, 1_767_226_200)
    await ledger.confirm_topup("d" * 64, 5_000, "pay:topup")
    intake = Intake(db, clock=lambda: 1_767_225_600)
    await intake.record(NewRequest("q1", "erin", "nip04", "what?", "q1", ("wss://r",)), ["e1"])
    await Outbox(db).add("answer:q1", [OutgoingEvent("a" * 64, "{}"),
                                       OutgoingEvent("b" * 64, "{}")])
    await intake.set_state("paused", "0")
    await db.close()


def _sqlite_ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite3"
    asyncio.run(_populate(str(path)))
    return path


def test_ledger_check_takes_a_postgresql_url(postgres_url: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(_populate(postgres_url))
    assert main(["ledger", "check", "--db", postgres_url]) == 0
    out = capsys.readouterr().out
    assert "subsidy" in out and out.strip().endswith("ok")


def test_copy_moves_a_ledger_and_proves_it(tmp_path: Path, postgres_url: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _sqlite_ledger(tmp_path)
    assert main(["ledger", "copy", "--from", str(path), "--to", postgres_url]) == 0
    out = capsys.readouterr().out
    assert out.count("transfers: ") == 2  # both reports printed
    assert "the two reports are equal" in out

    async def after() -> None:
        db = await Database.open(postgres_url)
        try:
            ledger = Ledger(db, LIMITS, clock=lambda: 1_767_225_600)
            assert [j.id for j in await ledger.recent_jobs("carol", 5)] == ["r2", "r1"]
            assert (await ledger.topup("d" * 64)).paid_msat == 5_000
            assert (await Intake(db).request("q1")).sender == "erin"
            assert await Intake(db).state("paused") == "0"
            message = await Outbox(db).message("answer:q1")
            assert [e.event_id for e in message] == ["a" * 64, "b" * 64]
            # the identities moved past the copied ids: new rows go on
            await ledger.credit_pool(1_000, "zap:after")
            await ledger.decide("g9", "frank", 900_000)
            p = await ledger.begin_payout("r2", "lnbc-2", "po:r2")  # a repeat: the same payout
            assert p.payout_id == 2
            report = await check(db, LIMITS)
            assert report.ok, report.violations
        finally:
            await db.close()

    asyncio.run(after())


def test_copy_refuses_a_target_that_holds_a_ledger(tmp_path: Path, postgres_url: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = _sqlite_ledger(tmp_path)

    async def zap() -> None:
        db = await Database.open(postgres_url)
        await Ledger(db, LIMITS).credit_pool(5, "zap:already-here")
        await db.close()

    asyncio.run(zap())
    assert main(["ledger", "copy", "--from", str(path), "--to", postgres_url]) == 2
    assert "already holds a ledger" in capsys.readouterr().err

    async def unchanged() -> None:
        db = await Database.open(postgres_url)
        assert (await check(db)).transfers == 1  # nothing was copied
        await db.close()

    asyncio.run(unchanged())


def test_copy_wants_a_file_and_a_url(tmp_path: Path, postgres_url: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = _sqlite_ledger(tmp_path)
    assert main(["ledger", "copy", "--from", postgres_url, "--to", str(path)]) == 2
    assert main(["ledger", "copy", "--from", str(tmp_path / "none"), "--to", postgres_url]) == 2
    err = capsys.readouterr().err
    assert "SQLite file" in err and "no ledger at" in err


@pytest.mark.parametrize("url", [
    f"postgresql://timmy:{SECRET}@127.0.0.1/ledger",
    f"postgres://timmy@127.0.0.1/ledger?password={SECRET}",
    f"postgresql://timmy:{SECRET}@[::1",  # unparseable: still not echoed
])
def test_a_password_in_the_url_is_refused_and_never_shown(
        url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(LocationError) as caught:
        parse_location(url, tmp_path)
    assert SECRET not in str(caught.value)
    with pytest.raises(ConfigError) as config_error:
        parse_settings({}, environ={"TIMMY_DB": url})
    assert SECRET not in str(config_error.value) and "TIMMY_DB" in str(config_error.value)
    assert main(["ledger", "check", "--db", url]) == 2
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err


def test_the_password_comes_from_the_environment_or_a_private_file(tmp_path: Path) -> None:
    where = parse_location("postgresql://timmy@db.example/ledger", tmp_path,
                           tmp_path / "db.password")
    assert str(where) == "postgresql://timmy@db.example/ledger"
    file = tmp_path / "db.password"
    with pytest.raises(SecretError):  # configured but missing
        where.password({})
    file.write_text("from-file\n")
    os.chmod(file, 0o644)
    with pytest.raises(SecretError, match="chmod 600") as too_open:
        where.password({})
    assert "from-file" not in str(too_open.value)
    os.chmod(file, 0o600)
    assert where.password({}) == "from-file"
    assert where.password({"TIMMY_DB_PASSWORD": "from-env"}) == "from-env"
    other = tmp_path / "other.password"
    other.write_text("from-other-file")
    os.chmod(other, 0o600)
    assert where.password({"TIMMY_DB_PASSWORD_FILE": str(other)}) == "from-other-file"
    assert parse_location("ledger.sqlite3", tmp_path).password({"TIMMY_DB_PASSWORD": "x"}) is None


@pytest.mark.parametrize("command", [["ledger", "check"], ["pool"]])
def test_an_unusable_password_file_is_a_clear_error(
        command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "db.password"
    file.write_text(SECRET)
    os.chmod(file, 0o644)
    monkeypatch.setenv("TIMMY_DB_PASSWORD_FILE", str(file))
    monkeypatch.delenv("TIMMY_DB_PASSWORD", raising=False)
    assert main([*command, "--db", "postgresql://timmy@127.0.0.1:1/ledger"]) == 2
    captured = capsys.readouterr()
    assert "chmod 600" in captured.err and SECRET not in captured.out + captured.err


def test_configured_location_and_password_file(tmp_path: Path) -> None:
    s = parse_settings({"agent": {"db": "postgresql://timmy@db.example:5433/ledger",
                                  "db_password_file": "secrets/db.password"}},
                       source=tmp_path / "timmy.toml", environ={})
    assert s.ledger == LedgerLocation(url="postgresql://timmy@db.example:5433/ledger",
                                      password_file=tmp_path / "secrets/db.password")
    assert str(s.ledger) == "postgresql://timmy@db.example:5433/ledger"
    assert parse_settings({}, environ={}).ledger.path == Path.cwd() / "data/timmy.sqlite3"


async def test_an_unreachable_server_is_a_storage_failure_without_the_password() -> None:
    with pytest.raises(StorageFailure) as caught:
        await Database.open("postgresql://timmy@127.0.0.1:1/ledger", password=SECRET)
    assert SECRET not in str(caught.value) and "127.0.0.1" in str(caught.value)


def test_the_password_reaches_the_server_and_no_message(
        postgres_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = postgres_cluster.new_schema(empty=True, role=PASSWORD_ROLE)  # scram-sha-256 for it

    async def refused(password: str | None) -> str:
        with pytest.raises(StorageFailure) as caught:
            await Database.open(url, password=password)
        return str(caught.value)

    assert "password" in asyncio.run(refused(None))
    wrong = "wrong-" + SECRET
    assert wrong not in asyncio.run(refused(wrong))
    monkeypatch.setenv("TIMMY_DB_PASSWORD", wrong)
    assert main(["ledger", "check", "--db", url]) == 2
    monkeypatch.setenv("TIMMY_DB_PASSWORD", PASSWORD)
    assert main(["ledger", "check", "--db", url]) == 0  # migrated, empty, balanced
    out = capsys.readouterr()
    assert out.out.strip().endswith("ok")
    assert wrong not in out.out + out.err and PASSWORD not in out.out + out.err
