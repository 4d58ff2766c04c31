"""``timmy ask`` (the operator's smoke test) against a running agent, as a subprocess: a DM over
NIP-17 and over NIP-04 from a given key gets its answer printed, and the agent's ledger shows the
job of that key done; an unreachable relay gives exit 1 and a message, a bad ``--to`` exit 2."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from bot.nostr.keys import Keys
from bot.secrets import write_secret_file
from tests.e2e.agent_process import AgentProcess
from tests.e2e.askers import Protocol
from tests.e2e.conftest import AgentFactory
from tests.e2e.ledger_view import LedgerView
from tests.e2e.money import fund_pool
from tests.fixtures.relay import RelayProcess

ROOT = Path(__file__).resolve().parents[2]
POOL_MSAT = 200_000


@pytest.fixture(scope="module")
def agent(agent_factory: AgentFactory, e2e_relays: list[RelayProcess]) -> AgentProcess:
    started = agent_factory([r.url for r in e2e_relays])
    asyncio.run(fund_pool(started.db_path, POOL_MSAT, "e2e:ask"))
    return started


def timmy(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, check=False)


@pytest.mark.parametrize("protocol", ["nip17", "nip04"])
def test_ask_a_running_agent(agent: AgentProcess, e2e_relays: list[RelayProcess],
                             tmp_path: Path, protocol: Protocol) -> None:
    keys = Keys.generate()
    key_file = tmp_path / "asker.nsec"
    write_secret_file(key_file, keys.nsec)
    done = timmy("ask", f"--{protocol}", "--to", agent.pubkey_hex, "--relay", e2e_relays[0].url,
                 "--key-file", str(key_file), "--timeout", "60", "What is a relay?")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip(), done.stderr
    assert keys.npub in done.stderr and protocol in done.stderr
    jobs = LedgerView(agent.db_path).jobs(keys.public_hex)
    assert [(j["serve"], j["state"]) for j in jobs] == [("free", "done")]


def test_ask_through_an_unreachable_relay(agent: AgentProcess) -> None:
    done = timmy("ask", "--to", agent.pubkey_hex, "--relay", "ws://127.0.0.1:9",
                 "--timeout", "5", "anyone there?")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no relay connected" in done.stderr


def test_ask_with_a_bad_recipient() -> None:
    done = timmy("ask", "--to", "npub1notakey", "--relay", "ws://127.0.0.1:9", "hello")
    assert done.returncode == 2
    assert done.stderr.startswith("error:")
