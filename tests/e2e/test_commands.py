"""Every DM command, as an asker and as an admin, over NIP-17 and NIP-04, against one agent.

Each command's ledger effect is checked from the SQLite file: ``estimate`` changes no money
table at all (only the intake tables that record the request and its reply), ``topup`` credits
exactly the invoice once paid, ``admin credit`` exactly once per message however many relays
deliver it, and the rest change nothing. Malformed commands get a short help and change nothing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import nostr_sdk as sdk
import pytest

from tests.e2e.agent_process import AgentProcess, WalletSetup
from tests.e2e.askers import Asker, Hub, Protocol
from tests.e2e.conftest import AgentFactory, HubMaker
from tests.e2e.ledger_view import MONEY_TABLES, LedgerView, changed_tables
from tests.e2e.lightning import LnbitsUser, find_bolt11, require_bolt11
from tests.e2e.money import fund_pool, job_in, until
from tests.fixtures.ai_server import AiTestServer
from tests.fixtures.relay import RelayProcess

PROTOCOLS: list[Protocol] = ["nip17", "nip04"]
POOL_MSAT = 200_000
INTAKE_TABLES = {"requests", "outbox", "processed_events", "relay_cursors", "agent_state"}
"""What recording a request and storing its reply may touch; nothing that holds money."""


@pytest.fixture(scope="module")
def admin_keys() -> sdk.Keys:
    return sdk.Keys.generate()


@pytest.fixture(scope="module")
def agent(agent_factory: AgentFactory, e2e_relays: list[RelayProcess], admin_keys: sdk.Keys,
          agent_lnbits: Callable[[], tuple[WalletSetup, LnbitsUser]]) -> AgentProcess:
    started = agent_factory([r.url for r in e2e_relays], agent_lnbits()[0],
                            admins=[admin_keys.public_key().to_hex()])
    asyncio.run(fund_pool(started.db_path, POOL_MSAT, "e2e:commands"))
    return started


@pytest.fixture
async def hub(hubs: HubMaker, e2e_relays: list[RelayProcess]) -> Hub:
    return await hubs([r.url for r in e2e_relays])


@pytest.fixture
async def admin(hub: Hub, agent: AgentProcess, admin_keys: sdk.Keys) -> Asker:
    asker = hub.asker(agent.pubkey_hex, admin_keys)
    await hub.watch([asker])
    return asker


async def one(asker: Asker, text: str, protocol: Protocol = "nip17") -> str:
    """Send ``text``; exactly one reply must come, in the same protocol; its text."""
    rid = await asker.send(text, protocol)
    [reply] = await asker.exactly(rid, settle_s=0.5)
    assert reply.protocol == protocol
    return reply.text


def sats_text(msat: int) -> str:
    """How an amount starts when written in sats (``12 sat…`` or ``12.5…``)."""
    whole, rest = divmod(msat, 1000)
    return f"{whole} sat" if not rest else f"{whole}."


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_help(agent: AgentProcess, hub: Hub, admin: Asker, protocol: Protocol) -> None:
    asker = await hub.new_asker(agent.pubkey_hex)
    text = await one(asker, "help", protocol)
    for word in ("estimate", "balance", "topup", "refund", "pool", "status"):
        assert word in text, f"help does not mention {word}:\n{text}"
    assert "admin" not in text.lower()
    assert "admin credit" in await one(admin, "help", protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_estimate_changes_nothing(agent: AgentProcess, hub: Hub, protocol: Protocol,
                                        ai_server: AiTestServer) -> None:
    view = LedgerView(agent.db_path)
    asker = await hub.new_asker(agent.pubkey_hex)
    await asyncio.sleep(0.5)  # anything still settling from earlier tests
    before = view.snapshot()
    text = await one(asker, "estimate why is the sky blue? #estimate-only", protocol)
    assert "sat" in text and find_bolt11(text) is None
    after = view.snapshot()
    assert {t: after[t] for t in MONEY_TABLES if t in after} == \
        {t: before[t] for t in MONEY_TABLES if t in before}, "estimate wrote to the ledger"
    assert changed_tables(before, after) <= INTAKE_TABLES
    chats = [r for r in ai_server.scenario_records(agent.config.ai_scenario)
             if r.path.endswith("/chat/completions") and "#estimate-only" in str(r.body)]
    assert chats == [], "an estimate ran the model"
    agent.ledger_check()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_balance_pool_status_refund_on_a_fresh_asker(agent: AgentProcess, hub: Hub,
                                                           protocol: Protocol) -> None:
    view = LedgerView(agent.db_path)
    asker = await hub.new_asker(agent.pubkey_hex)
    before = view.snapshot(MONEY_TABLES)
    balance = await one(asker, "balance", protocol)
    assert "0 sats" in balance and "50 sats" in balance, balance  # balance, free allowance
    assert re.search(r"\b5\b", balance), f"the free questions left are not shown:\n{balance}"
    pool = await one(asker, "pool", protocol)
    assert sats_text(view.pool_available()) in pool, pool
    assert "no" in (await one(asker, "status", protocol)).lower()
    assert "no refund" in (await one(asker, "refund", protocol)).lower()
    assert view.snapshot(MONEY_TABLES) == before
    agent.ledger_check()


async def test_status_lists_the_asker_jobs(agent: AgentProcess, hub: Hub) -> None:
    view = LedgerView(agent.db_path)
    asker = await hub.new_asker(agent.pubkey_hex)
    rid = await asker.send("a free question for the status list")
    await asker.exactly(rid)
    await job_in(view, rid, "done")
    text = await one(asker, "status")
    assert rid[:8] in text and "free" in text and "done" in text, text
    balance = await one(asker, "balance")
    assert "4 questions left" in balance, balance


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_topup_credits_the_balance_once(agent: AgentProcess, hub: Hub, protocol: Protocol,
                                              lnbits_user: Callable[..., LnbitsUser]) -> None:
    view = LedgerView(agent.db_path)
    payer = lnbits_user("payer", 100)
    asker = await hub.new_asker(agent.pubkey_hex)
    text = await one(asker, "topup 7", protocol)
    invoice = require_bolt11(text)
    assert invoice.amount_msat == 7_000
    [topup] = view.topups(asker.pubkey)
    assert topup["state"] == "open" and view.balance(asker.pubkey) == 0
    await payer.pay(invoice.bolt11)
    await until(lambda: view.balance(asker.pubkey) == 7_000, "the top-up credited")
    await asyncio.sleep(1.0)
    assert view.balance(asker.pubkey) == 7_000
    [topup] = view.topups(asker.pubkey)
    assert topup["state"] == "paid" and topup["paid_msat"] == 7_000
    assert "7 sats" in await one(asker, "balance", protocol)
    told = asker.unthreaded()
    assert len(told) <= 1, f"told more than once about one payment: {[r.text for r in told]}"
    agent.ledger_check()


@pytest.mark.parametrize(("text", "expect"), [
    ("topup abc", "topup"), ("topup 0", "topup"), ("topup", "topup"),
    ("refund notaninvoice", "invoice"), ("estimate", "estimate"), ("balance please", "balance"),
    ("refund lnbc1garbage", ""),
])
async def test_malformed_commands_get_a_short_help(agent: AgentProcess, hub: Hub, text: str,
                                                   expect: str) -> None:
    view = LedgerView(agent.db_path)
    asker = await hub.new_asker(agent.pubkey_hex)
    before = view.snapshot(MONEY_TABLES)
    reply = await one(asker, text)
    assert expect in reply.lower() and find_bolt11(reply) is None, reply
    assert len(reply) < 400, f"not a short help:\n{reply}"
    assert view.snapshot(MONEY_TABLES) == before


async def test_admin_commands(agent: AgentProcess, hub: Hub, admin: Asker) -> None:
    view = LedgerView(agent.db_path)
    limits = await one(admin, "admin limits")
    assert "daily_free_msat = 50000" in limits and "daily_free_jobs = 5" in limits, limits
    pool = await one(admin, "admin pool", "nip04")
    assert sats_text(view.pool_available()) in pool, pool

    # credit: exactly once per message, even delivered by both relays
    before = view.pool_available()
    rid, event = admin.build("admin credit 7", "nip17")
    await admin.send_event(event, rid, "nip17", "admin credit 7")
    await hub.publish_again(event)  # the same message again
    [reply] = await admin.exactly(rid, settle_s=1.0)
    assert "7 sats" in reply.text
    assert view.pool_available() == before + 7_000
    assert view.posted("operator") <= -7_000

    # someone else's "admin credit" is only a question: the pool gets no operator money
    stranger = await hub.new_asker(agent.pubkey_hex)
    operator_before = view.posted("operator")
    srid = await stranger.send("admin credit 1000")
    await stranger.exactly(srid)
    assert view.posted("operator") == operator_before

    # pause: a fresh asker's question is quoted; resume: free again
    assert "paused" in (await one(admin, "admin pause")).lower()
    asker = await hub.new_asker(agent.pubkey_hex)
    quoted_id = await asker.send("is it free while paused?")
    [quote] = await asker.exactly(quoted_id)
    assert find_bolt11(quote.text) is not None and "paused" in quote.text.lower(), quote.text
    assert "resumed" in (await one(admin, "admin resume")).lower()
    free_id = await asker.send("and now?")
    [answer] = await asker.exactly(free_id)
    assert find_bolt11(answer.text) is None
    assert (await job_in(view, free_id, "done"))["serve"] == "free"

    # a limit changed at runtime, then put back
    changed = await one(admin, "admin limit daily_free_msat 0")
    assert "daily_free_msat = 0" in changed, changed
    gated = await hub.new_asker(agent.pubkey_hex)
    gated_id = await gated.send("no allowance left for anyone")
    await gated.exactly(gated_id)
    assert (await job_in(view, gated_id, "invoiced"))["serve"] == "gate"
    restored = await one(admin, "admin limit daily_free_msat 50000")
    assert "daily_free_msat = 50000" in restored
    refused = await one(admin, "admin limit nonsense 1")
    assert "daily_free_msat" in refused and find_bolt11(refused) is None, refused
    agent.ledger_check(limits=False)
