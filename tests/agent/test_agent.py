"""The agent in one process against a real relay, the OpenAI-compatible test server and the dev
wallet: each serve path and the commands, with the ledger checked after each.
(The agent as its own process, killed and restarted, is proved in tests/e2e/.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.agent.agent import Agent, AgentParts
from bot.agent.inbox import KIND_NIP04, open_dm
from bot.agent.settings import ProfileConfig, ServiceConfig
from bot.nostr import nip04, nip17, nip57
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from bot.nostr.nip59 import KIND_GIFT_WRAP
from bot.relays import RelayPool
from bot.relays.config import RelayConfig
from bot.relays.pool import GIFT_WRAP_LOOKBACK_S
from bot.wallets.bolt11 import decode_invoice
from bot.wallets.config import PayoutPolicy
from bot.wallets.dev import DevWallet
from bot.wallets.lightning_address import AgentAddress
from bot.wallets.lnurl import LnurlClient
from bot.work import OpenAIConfig, Pricing
from bot.work.openai_compat import OpenAIBackend
from storage import Database, Limits, check
from tests.fixtures.ai_server import AiTestServer, Behaviour, Scenario
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer
from tests.fixtures.lnurl_provider import LnurlProvider
from tests.fixtures.nwc_service import LnbitsRest

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


@contextlib.asynccontextmanager
async def start_agent(tmp_path: Path, relay_url: str, ai_server: AiTestServer,
                      profile: ProfileConfig | None = None,
                      lnurl_hosts: frozenset[str] = frozenset(),
                      more_relays: Sequence[str] = (),
                      service: Mapping[str, Any] | None = None,
                      ai: Mapping[str, Any] | None = None) -> AsyncIterator[Running]:
    db = await Database.open(tmp_path / "agent.sqlite3")
    scenario = ai_server.scenario()
    wallet = DevWallet()
    admin = Keys.generate()
    async with httpx.AsyncClient() as http:
        backend = OpenAIBackend(OpenAIConfig(base_url=ai_server.url, model="test", max_tokens=32,
                                             headers=scenario.headers, **(ai or {})), http)
        parts = AgentParts(
            keys=Keys.generate(), relays=[RelayConfig(u) for u in (relay_url, *more_relays)],
            db=db, wallet=wallet,
            backend=backend, http=http, pricing=PRICING, limits=LIMITS,
            service=replace(ServiceConfig(work_timeout_s=10, burst=20, rate_per_minute=600),
                            **(service or {})),
            profile=profile or ProfileConfig(), admins=frozenset({admin.public_hex}),
            max_tokens=32, payout_policy=PayoutPolicy(), lnurl_insecure_hosts=lnurl_hosts)
        agent = Agent(parts)
        await agent.start()
        try:
            yield Running(agent, wallet, scenario, db, relay_url, admin)
        finally:
            await agent.stop()
            await db.close()


@pytest.fixture
async def running(tmp_path: Path, relay_url: str, ai_server: AiTestServer
                  ) -> AsyncIterator[Running]:
    async with start_agent(tmp_path, relay_url, ai_server) as agent:
        yield agent


class Asker:
    """A user: sends DMs to the agent and collects the replies, decrypted."""

    def __init__(self, pool: RelayPool, keys: Keys, agent: Keys) -> None:
        self.pool, self.keys, self.agent = pool, keys, agent
        self.replies: list[str] = []
        self.event_ids: list[str] = []
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
            self.event_ids.append(event.id)

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
    # what the work did not use comes back: whole sats as a refund, the sub-sat rest as balance
    owed = invoice.amount_msat - job.actual_msat
    assert job.refund_msat == owed - owed % 1000
    claimed = await asker.ask("refund")  # kept as balance (no lightning address to pay)
    assert ("balance" in claimed) if job.refund_msat else ("No refund" in claimed)
    balance = await running.agent.ledger.balance(asker.keys.public_hex)
    assert balance.available_msat == owed
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


async def test_profile_and_relay_lists_are_published(running: Running) -> None:
    keys = Keys.generate()
    me = running.agent.parts.keys.public_hex
    async with RelayPool([RelayConfig(running.relay_url)], keys=keys) as pool:
        events: list[Event] = []
        for _ in range(50):
            events = await pool.fetch([{"kinds": [0, 10002, 10050], "authors": [me]}])
            if len(events) == 3:
                break
            await asyncio.sleep(0.1)
    by_kind = {e.kind: e for e in events}
    assert json.loads(by_kind[0].content)["name"] == "Timmy"
    assert by_kind[10002].tag_values("r") == [running.relay_url]
    assert by_kind[10050].tag_values("relay") == [running.relay_url]


async def test_a_zap_of_the_quote_pays_the_job(
        tmp_path: Path, relay_url: str, ai_server: AiTestServer,
        lnurl_provider_factory: Callable[..., LnurlProvider], lnbits_server: LnbitsServer,
        lnbits_new_wallet: Callable[..., LnbitsAccount]) -> None:
    provider = lnurl_provider_factory("timmy")
    profile = ProfileConfig(lud16=provider.address)
    async with (start_agent(tmp_path, relay_url, ai_server, profile,
                            frozenset({provider.host})) as running,
                httpx.AsyncClient(timeout=30.0) as http,
                httpx.AsyncClient(base_url=lnbits_server.url, timeout=30.0) as lnbits_http):
        keys = Keys.generate()
        async with RelayPool([RelayConfig(relay_url)], keys=keys) as pool:
            asker = Asker(pool, keys, running.agent.parts.keys)
            await asker.start()
            await pool.wait_connected(5)
            quote = await asker.ask("a question paid by a zap", "nip04")
            (job,) = await running.agent.ledger.recent_jobs(keys.public_hex)
            amount = job.invoice_msat
            assert amount is not None and str(job.state) == "invoiced"
            lnurl = LnurlClient(http, insecure_hosts=frozenset({provider.host}))
            address = AgentAddress(provider.address, lnurl)
            request = nip57.build_zap_request(
                Keys.generate(), recipient_pubkey=running.agent.parts.keys.public_hex,
                amount_msat=amount, relays=[relay_url], lnurl=address.lnurl,
                event_id=asker.event_ids[0])
            got = await lnurl.fetch_invoice(await address.pay_request(), amount,
                                            zap_request_json=request.to_json())
            payer = LnbitsRest(lnbits_http, lnbits_new_wallet("zapper", 10_000))
            status, _ = await payer.pay(got.bolt11)
            assert status in (200, 201) and "costs at most" in quote
            answer = await asker.next_reply(1, timeout_s=30)
            assert "you paid" in answer
            job = await running.agent.ledger.job(job.id)
            assert str(job.state) == "done" and job.paid_msat == amount
            await _ok(running.db)
