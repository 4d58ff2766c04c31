"""The operator commands: keygen, config, estimate, ask, pool (bot/commands.py)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from bot.cli import main
from bot.nostr.keys import Keys
from storage import Database, Ledger, Limits
from tests.fixtures.ai_server import AiTestServer, Behaviour


def _config(tmp_path: Path, ai_server: AiTestServer, scenario_header: dict[str, str]) -> Path:
    headers = ", ".join(f'"{k}" = "{v}"' for k, v in scenario_header.items())
    path = tmp_path / "timmy.toml"
    path.write_text(f"""
[agent]
db = "ledger.sqlite3"

[pricing]
input_msat = 1
output_msat = 2
fixed_fee_msat = 100
per_tokens = 1

[limits]
daily_free_msat = 100
daily_free_jobs = 5

[ai]
base_url = "{ai_server.url}"
model = "test-model"
max_tokens = 20
stream = false
headers = {{ {headers} }}
""")
    return path


def test_keygen_writes_a_0600_key_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "secrets" / "agent.nsec"
    assert main(["keygen", "--out", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    keys = Keys.parse(out.read_text().strip())
    printed = capsys.readouterr().out
    assert keys.npub in printed and keys.nsec not in printed
    before = hashlib.sha256(out.read_bytes()).hexdigest()
    assert main(["keygen", "--out", str(out)]) == 2
    assert hashlib.sha256(out.read_bytes()).hexdigest() == before


def test_config_shows_settings_but_no_secret(
    tmp_path: Path, ai_server: AiTestServer, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = Keys.generate()
    monkeypatch.setenv("TIMMY_NSEC", keys.nsec)
    cfg = _config(tmp_path, ai_server, {})
    assert main(["config", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert keys.npub in out and keys.nsec not in out and keys.secret_hex not in out
    assert "test-model" in out and str(tmp_path / "ledger.sqlite3") in out
    bad = tmp_path / "bad.toml"
    bad.write_text("[pricing]\ninput_msat = -1\n")
    assert main(["config", "--config", str(bad)]) == 2


def test_config_shows_wallet_service_and_profile_but_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    invoice_key, admin_key = "f1" * 16, "e2" * 16
    monkeypatch.setenv("TEST_INVOICE_KEY", invoice_key)
    admin = tmp_path / "admin.key"
    admin.write_text(admin_key)
    admin.chmod(0o644)
    cfg = tmp_path / "timmy.toml"
    cfg.write_text("""
[wallet]
backend = "lnbits"
max_fee_ppm = 5000
[wallet.lnbits]
url = "https://lnbits.example"
invoice_key_env = "TEST_INVOICE_KEY"
admin_key_file = "admin.key"
[service]
concurrency = 7
[profile]
lud16 = "timmy@example.com"
""")
    assert main(["config", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert invoice_key not in out and admin_key not in out
    assert "lnbits; network bc (default)" in out and "https://lnbits.example" in out
    assert "env TEST_INVOICE_KEY (readable)" in out
    assert f"file {admin} (not usable" in out and "chmod 600" in out
    assert "5000 ppm" in out
    assert "concurrency:" in out and "7" in out and "invoice_expiry_s:" in out
    assert "'timmy@example.com'" in out
    dev = tmp_path / "dev.toml"
    dev.write_text('[wallet]\nbackend = "dev"\n')
    assert main(["config", "--config", str(dev)]) == 2
    assert "allow_dev = true" in capsys.readouterr().err
    assert main(["config", "--config", str(dev), "--allow-dev-wallet"]) == 0
    assert "dev (NOT REAL MONEY)" in capsys.readouterr().out


def test_estimate_is_a_dry_run(
    tmp_path: Path, ai_server: AiTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = ai_server.scenario()
    cfg = _config(tmp_path, ai_server, scenario.headers)
    asker = Keys.generate().public_hex

    async def fund() -> None:
        db = await Database.open(tmp_path / "ledger.sqlite3")
        await Ledger(db, Limits(1000, 5)).credit_pool(50_000, "zap:x", zapper_pubkey="z")
        await db.close()

    asyncio.run(fund())
    ledger = tmp_path / "ledger.sqlite3"
    before = {p.name: p.read_bytes() for p in tmp_path.glob("ledger.sqlite3*")}
    assert main(["estimate", "--config", str(cfg), "--pubkey", asker, "why is the sky blue?"]) == 0
    out = capsys.readouterr().out
    assert "quote:" in out and "+ up to 20 answer tokens" in out
    # allowance 100 msat < the quote (152 msat): a partial decision, nothing debited
    assert "decision: partial" in out and "would cover 0.1 sats, the asker pays 0.052 sats" in out
    assert {p.name: p.read_bytes() for p in tmp_path.glob("ledger.sqlite3*")} == before
    assert ledger.is_file()
    assert scenario.generations() == 0


def test_ask_answers_and_prices_the_real_usage(
    tmp_path: Path, ai_server: AiTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = ai_server.scenario().script(Behaviour(answer_tokens=7))
    cfg = _config(tmp_path, ai_server, scenario.headers)
    assert main(["ask", "--local", "--config", str(cfg), "why is the sky blue?"]) == 0
    out = capsys.readouterr().out
    assert "7 answer tokens (reported)" in out
    assert scenario.generations() == 1


def test_ask_reports_a_failed_backend(
    tmp_path: Path, ai_server: AiTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = ai_server.scenario().script(Behaviour(kind="garbage"))
    cfg = _config(tmp_path, ai_server, scenario.headers)
    assert main(["ask", "--local", "--config", str(cfg), "why is the sky blue?"]) == 1
    assert "the work failed (malformed" in capsys.readouterr().err


def test_pool_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db_path = tmp_path / "l.sqlite3"

    async def fund() -> None:
        db = await Database.open(db_path)
        ledger = Ledger(db, Limits(1000, 5))
        await ledger.credit_pool(21_000, "zap:a", zapper_pubkey=zapper.public_hex,
                                 note="keep it free")
        await ledger.credit_pool(4_000, "zap:b", zapper_pubkey="z2")
        await ledger.credit_pool(9_000, "operator:c", source="operator")
        await db.close()

    zapper = Keys.generate()
    asyncio.run(fund())
    assert main(["pool", "--db", str(db_path)]) == 0
    out = capsys.readouterr().out
    assert "available:   34 sats" in out and "by 2 zaps from 2 zappers" in out
    assert "spent today: 0 sats on 0 question(s)" in out
    zaps = out.split("recent zaps (newest first):\n", 1)[1].splitlines()
    assert len(zaps) == 2  # zaps only, not the operator's top-up
    assert zaps[0].split()[2:] == ["4", "sats", "someone"]  # not a pubkey: named no one
    assert zaps[1].split()[2:] == ["21", "sats", zapper.npub, '"keep', 'it', 'free"']
    assert main(["pool", "--db", str(db_path), "--zaps", "0"]) == 0
    assert "recent zaps" not in capsys.readouterr().out
    assert main(["pool", "--db", str(db_path), "--zaps", "5000"]) == 2
    assert main(["pool", "--db", str(tmp_path / "missing.sqlite3")]) == 2
