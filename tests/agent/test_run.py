"""`timmy run` refuses to start on a bad setting, with one line naming it (exit code 2)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bot.nostr.keys import Keys
from tests.fixtures.ai_server import AiTestServer

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _write(tmp: Path, *, ai_url: str, relay: str, wallet: str) -> Path:
    key = tmp / "agent.nsec"
    key.write_text(Keys.generate().secret_hex)
    key.chmod(0o600)
    (tmp / "relays.toml").write_text(f'[[relay]]\nurl = "{relay}"\n')
    config = tmp / "timmy.toml"
    config.write_text(
        f'[agent]\ndb = "{tmp / "ledger.sqlite3"}"\nrelays = "{tmp / "relays.toml"}"\n'
        f'key_file = "{key}"\n\n[ai]\nbase_url = "{ai_url}"\nmodel = "m"\n\n{wallet}\n')
    return config


def _run(config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TIMMY_ALLOW_DEV_WALLET", None)
    return subprocess.run([sys.executable, "-m", "bot", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


DEV = '[wallet]\nbackend = "dev"\nallow_dev = true'


@pytest.mark.parametrize(("ai_url", "relay", "wallet", "expected"), [
    ("http://127.0.0.1:{closed}/v1", "ws://127.0.0.1:1", DEV, "[ai] base_url"),
    ("http://127.0.0.1:{ai}/v1", "http://not-a-relay", DEV, "relays"),
    ("http://127.0.0.1:{ai}/v1", "ws://127.0.0.1:1", '[wallet]\nbackend = "dev"', "allow_dev"),
    ("http://127.0.0.1:{ai}/v1", "ws://127.0.0.1:1",
     '[wallet]\nbackend = "lnbits"\n[wallet.lnbits]\nurl = "http://127.0.0.1:{closed}"\n'
     'invoice_key_env = "TEST_NO_SUCH_KEY"', "TEST_NO_SUCH_KEY"),
    ("http://127.0.0.1:{ai}/v1", "ws://127.0.0.1:1", "", "[wallet]"),
])
def test_bad_settings_stop_the_start(tmp_path: Path, ai_server_port: int, ai_url: str,
                                     relay: str, wallet: str, expected: str) -> None:
    fill = {"closed": _closed_port(), "ai": ai_server_port}
    config = _write(tmp_path, ai_url=ai_url.format(**fill), relay=relay,
                    wallet=wallet.format(**fill))
    done = _run(config)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and expected in last, done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def ai_server_port(ai_server: AiTestServer) -> int:
    return ai_server.port
