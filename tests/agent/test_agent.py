"""The agent in one process against a real relay, the OpenAI-compatible test server and the dev
wallet: each serve path and the commands, with the ledger checked after each.
(The agent as its own process, killed and restarted, is proved in tests/e2e/.)"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bot.agent.agent import Agent, AgentParts
from bot.agent.inbox import KIND_NIP04, open_dm
from bot.agent.settings import ProfileConfig, ServiceConfig
from bot.nostr import nip04, nip17
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from bot.nostr.nip59 import KIND_GIFT_WRAP
from bot.relays import RelayPool
from bot.relays.config import RelayConfig
from bot.relays.pool import GIFT_WRAP_LOOKBACK_S
from bot.wallets.bolt11 import decode_invoice
from bot.wallets.config import PayoutPolicy
from bot.wallets.dev import DevWallet
from bot.work import OpenAIConfig, Pricing
from bot.work.openai_compat import OpenAIBackend
from storage import Database, Limits, check
from tests.fixtures.ai_server import AiTestServer, Behaviour, Scenario

PRICING = Pricing(input_msat=1000, output_msat=3000, fixed_fee_msat=1000)
LIMITS = Limits(daily_free_msat=50_000, daily_free_jobs=5)
BOLT11 = re.compile(r"^ln\w+$", re.M)


@dataclass
class Running:
    agent: Agent
    wallet: DevWallet
    scenario: Scenario
    db: Database
    relay_url: str
    admin: Keys = field(default_factory=Keys.generate)


@pytest.fixture
async def running(tmp_path: Path, relay_url: str, ai_server: AiTestServer
                  ) -> AsyncIterator[Running]:
    db = await Database.open(tmp_path / "agent.sqlite3")
    scenario = ai_server.scenario()
    wallet = DevWallet()
    admin = Keys.generate()
    async with httpx.AsyncClient() as http:
        backend = OpenAIBackend(OpenAIConfig(base_url=ai_server.url, model="test", max_tokens=32,
                                             headers=scenario.headers), http)
        parts = AgentParts(
            keys=Keys.generate(), relays=[RelayConfig(relay_url)], db=db, wallet=wallet,
            backend=backend, http=http, pricing=PRICING, limits=LIMITS,
            service=ServiceConfig(work_timeout_s=10, burst=20, rate_per_minute=600),
            profile=ProfileConfig(), admins=frozenset({admin.public_hex}), max_tokens=32,
            payout_policy=PayoutPolicy())
        agent = Agent(parts)
        await agent.start()
        try:
            yield Running(agent, wallet, scenario, db, relay_url, admin)
        finally:
            await agent.stop()
            await db.close()


class Asker:
    """A user: sends DMs to the agent and collects the replies, decrypted."""

    def __init__(self, pool: RelayPool, keys: Keys, agent: Keys) -> None:
        self.pool, self.keys, self.agent = pool, keys, agent
        self.replies: list[str] = []
        self.seen: set[str] = set()

    async def start(self) -> None:
        await self.pool.subscribe([{"kinds": [KIND_NIP04, KIND_GIFT_WRAP],
                                    "#p": [self.keys.public_hex]}], self._on_event,
                                  lookback_s=GIFT_WRAP_LOOKBACK_S)

    async def _on_event(self, event: Event, relay_url: str) -> None:
        if event.pubkey == self.keys.public_hex:
            return
        dm = open_dm(self.keys, event)
        if dm.message_id not in self.seen:
            self.seen.add(dm.message_id)
            self.replies.append(dm.text)

    async def ask(self, text: str, protocol: str = "nip17") -> str:
        count = len(self.replies)
        if protocol == "nip04":
            content = nip04.encrypt(self.keys.secret_hex, self.agent.public_hex, text)
            event = sign_event(self.keys, 4, content, [["p", self.agent.public_hex]])
            assert (await self.pool.publish(event)).ok
        else:
            msg = nip17.private_message(self.keys, self.agent.public_hex, text)
            assert (await self.pool.publish(msg.to_recipient)).ok
        return await self.next_reply(count)

    async def next_reply(self, count: int, timeout_s: float = 15.0) -> str:
        async with asyncio.timeout(timeout_s):
            while len(self.replies) <= count:
                await asyncio.sleep(0.02)
        return self.replies[count]


@pytest.fixture
async def asker(running: Running) -> AsyncIterator[Asker]:
    keys = Keys.generate()
    async with RelayPool([RelayConfig(running.relay_url)], keys=keys) as pool:
        a = Asker(pool, keys, running.agent.parts.keys)
        await a.start()
        await pool.wait_connected(5)
        yield a


async def _ok(db: Database) -> None:
    report = await check(db)
    assert report.ok, report.violations


def _bolt11(text: str) -> str:
    match = BOLT11.search(text)
    assert match, text
    return match.group(0)


@pytest.mark.parametrize("protocol", ["nip17", "nip04"])
async def test_free_answer(running: Running, asker: Asker, protocol: str) -> None:
    await running.agent.ledger.credit_pool(1_000_000, f"fund-{protocol}", source="operator")
    reply = await asker.ask("why is the sky blue?", protocol)
    assert "— free: the pool paid" in reply
    (job,) = await running.agent.ledger.recent_jobs(asker.keys.public_hex)
    assert (str(job.serve), str(job.state)) == ("free", "done")
    assert job.absorbed_msat == job.actual_msat and job.actual_msat
    await _ok(running.db)


async def test_gate_quote_then_paid_answer_and_refund(running: Running, asker: Asker) -> None:
    quote = await asker.ask("why is the sky blue?", "nip04")
    assert "costs at most" in quote and "NOT REAL MONEY" in quote
    invoice = decode_invoice(_bolt11(quote))
    assert invoice.amount_msat is not None and invoice.amount_msat % 1000 == 0
    running.wallet.settle(invoice.payment_hash)
    answer = await asker.next_reply(1)
    assert "you paid" in answer
    (job,) = await running.agent.ledger.recent_jobs(asker.keys.public_hex)
    assert (str(job.serve), str(job.state)) == ("gate", "done")
    assert job.paid_msat == invoice.amount_msat
    assert job.actual_msat is not None
    assert job.refund_msat == invoice.amount_msat - job.actual_msat
    claimed = await asker.ask("refund")
    assert "balance" in claimed
    balance = await running.agent.ledger.balance(asker.keys.public_hex)
    assert balance.available_msat == job.refund_msat
    # with a balance that covers the estimate, the next answer is a session: no invoice
    await running.agent.ledger.credit_balance(asker.keys.public_hex, 100_000, "gift")
    session = await asker.ask("and why are sunsets red?")
    assert "from your balance" in session
    jobs = await running.agent.ledger.recent_jobs(asker.keys.public_hex)
    assert str(jobs[0].serve) == "session" and str(jobs[0].state) == "done"
    await _ok(running.db)


async def test_work_failure_after_payment_is_refunded(running: Running, asker: Asker) -> None:
    running.scenario.script(Behaviour(kind="status", status=400, message="bad"))
    quote = await asker.ask("a question that fails")
    running.wallet.settle(decode_invoice(_bolt11(quote)).payment_hash)
    told = await asker.next_reply(1)
    assert "could not answer" in told and "Refund" in told
    (job,) = await running.agent.ledger.recent_jobs(asker.keys.public_hex)
    assert str(job.state) == "failed" and job.refund_msat == job.paid_msat
    await _ok(running.db)


async def test_commands(running: Running, asker: Asker) -> None:
    assert "estimate <question>" in await asker.ask("help")
    assert "Balance: 0 sats" in await asker.ask("balance")
    assert "Pool:" in await asker.ask("pool")
    assert "No questions yet" in await asker.ask("status")
    assert "usage: topup" in await asker.ask("topup lots")
    topup = await asker.ask("topup 21")
    running.wallet.settle(decode_invoice(_bolt11(topup)).payment_hash)
    assert "added to your balance" in await asker.next_reply(len(asker.replies))
    assert (await running.agent.ledger.balance(asker.keys.public_hex)).available_msat == 21_000
    before = await check(running.db)
    assert "Estimate: at most" in await asker.ask("estimate why is the sky blue?")
    after = await check(running.db)
    assert before.balances == after.balances and before.transfers == after.transfers
    assert "No refund is waiting" in await asker.ask("refund")
    await _ok(running.db)
