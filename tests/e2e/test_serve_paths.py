"""Every serve path of the seed, over NIP-17 and NIP-04, through the agent as its own process,
with LNbits invoices paid from the askers' own LNbits wallets.

Three agents serve this module (each scenario has its own fresh askers):

- ``rich``: a pool of 1 000 sats, a free allowance of 12 sats a day: a short question is free, a
  long one (~15 sats) is partial (the pool pays 12 sats, the asker the rest).
- ``bare``: an empty pool: every question is gated; a prepaid balance makes a session. Its work
  times out after 3 s (for the stalled-work scenario).
- ``tight``: a pool of exactly one allowance (12 sats), invoices valid 60 s: the pool drained
  between a quote and its payment, and an invoice that expires.

Each scenario ends with ``ledger check`` passing and the exact effect asserted from the SQLite
file: the job's serve, state and amounts, the pool, the asker's balance, refunds and payouts,
against costs computed from the AI test server's own records (``tests/e2e/money.py``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nostr_sdk as sdk
import pytest

from tests.e2e.agent_process import DEFAULT_PRICING, AgentProcess, WalletSetup
from tests.e2e.askers import Asker, Hub, Protocol, Reply
from tests.e2e.conftest import AgentFactory, HubMaker
from tests.e2e.ledger_view import LedgerView
from tests.e2e.lightning import LnbitsUser, find_bolt11, require_bolt11
from tests.e2e.money import cost, fund_pool, job_in, until, usage_of, whole_sats_up
from tests.fixtures.ai_server import VOCABULARY, AiTestServer
from tests.fixtures.relay import RelayProcess

PROTOCOLS: list[Protocol] = ["nip17", "nip04"]
ALLOWANCE_MSAT = 12_000
RICH_POOL_MSAT = 1_000_000
LONG_QUESTION = "Please summarise: " + " ".join(["lorem"] * 600)
ANSWER_12 = " ".join(VOCABULARY[i % len(VOCABULARY)] for i in range(12))
EXPIRY_S = 60
EXPIRY_WAIT_S = 200.0
"""The invoice lives 60 s; the agent may take its settlement poll and grace on top."""


def tag() -> str:
    return f"#{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def relay(e2e_relays: list[RelayProcess]) -> str:
    return e2e_relays[0].url


@pytest.fixture(scope="module")
def payer(lnbits_user: Callable[..., LnbitsUser]) -> LnbitsUser:
    return lnbits_user("payer", 100_000)


def _agent(factory: AgentFactory, relay: str, wallet: WalletSetup, pool_msat: int,
           **fields: Any) -> AgentProcess:
    agent = factory([relay], wallet, limits={"daily_free_msat": ALLOWANCE_MSAT,
                                             "daily_free_jobs": 5}, **fields)
    if pool_msat:
        asyncio.run(fund_pool(agent.db_path, pool_msat, f"e2e:pool:{agent.pubkey_hex[:8]}"))
    return agent


@pytest.fixture(scope="module")
def rich(agent_factory: AgentFactory, relay: str,
         agent_lnbits: Callable[[], tuple[WalletSetup, LnbitsUser]]) -> AgentProcess:
    return _agent(agent_factory, relay, agent_lnbits()[0], RICH_POOL_MSAT)


@pytest.fixture(scope="module")
def bare(agent_factory: AgentFactory, relay: str,
         agent_lnbits: Callable[[], tuple[WalletSetup, LnbitsUser]]) -> AgentProcess:
    return _agent(agent_factory, relay, agent_lnbits()[0], 0, service={"work_timeout_s": 3})


@dataclass
class Expiring:
    """The quote of the expiry scenario, asked first so its minute runs during the others
    (``failure`` says why there is none: the expiry test reports it, the others run on)."""

    agent: AgentProcess
    keys: sdk.Keys
    request_id: str = ""
    quoted_at: float = 0.0
    failure: str = ""


@pytest.fixture(scope="module")
def tight(agent_factory: AgentFactory, relay: str,
          agent_lnbits: Callable[[], tuple[WalletSetup, LnbitsUser]]) -> AgentProcess:
    return _agent(agent_factory, relay, agent_lnbits()[0], ALLOWANCE_MSAT,
                  service={"invoice_expiry_s": EXPIRY_S})


@pytest.fixture(scope="module", autouse=True)
def expiring(tight: AgentProcess, relay: str) -> Expiring:
    state = Expiring(tight, sdk.Keys.generate())

    async def ask() -> None:
        async with Hub([relay]) as hub:
            asker = hub.asker(tight.pubkey_hex, state.keys)
            await hub.watch([asker])
            rid = await asker.send(f"{LONG_QUESTION} nobody pays for this {tag()}", "nip04")
            quote = await asker.reply_to(rid)
            require_bolt11(quote.text)
            state.request_id, state.quoted_at = rid, time.monotonic()

    try:
        asyncio.run(ask())
    except AssertionError as exc:
        state.failure = f"no quote to let expire: {exc}"
    return state


def view_of(agent: AgentProcess) -> LedgerView:
    return LedgerView(agent.db_path)


def assert_quote(reply: Reply, amount_msat: int) -> str:
    """The quote's shape (AGENT_CONTRACT.md): the price first, the invoice alone on a line."""
    bolt11 = find_bolt11(reply.text)
    assert bolt11 is not None, f"no invoice line in the quote:\n{reply.text}"
    assert "sat" in reply.lines[0], f"the first line does not say the price:\n{reply.text}"
    assert bolt11 in [line.strip().lower() for line in reply.lines]
    assert require_bolt11(reply.text).amount_msat == amount_msat
    return bolt11


def assert_answer(reply: Reply, answer: str = ANSWER_12) -> str:
    """The answer text, a blank line, then a line starting with ``—``; returns that line."""
    assert reply.text.startswith(answer), f"not the model's answer:\n{reply.text}"
    footer = [line for line in reply.lines if line.startswith("—")]
    assert footer, f"no '—' line after the answer:\n{reply.text}"
    index = reply.lines.index(footer[0])
    assert reply.lines[index - 1] == "", f"no blank line before the '—' line:\n{reply.text}"
    return footer[0]


def assert_daily(view: LedgerView, pubkey: str, absorbed_msat: int, jobs: int) -> None:
    rows = view.query("SELECT absorbed_msat, jobs FROM daily_usage WHERE pubkey = ?", (pubkey,))
    got = (sum(int(r["absorbed_msat"]) for r in rows), sum(int(r["jobs"]) for r in rows))
    assert got == (absorbed_msat, jobs), f"daily usage {got}, expected {(absorbed_msat, jobs)}"


# -- free ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_free(rich: AgentProcess, hubs: HubMaker, relay: str, protocol: Protocol,
                    ai_server: AiTestServer) -> None:
    view = view_of(rich)
    hub = await hubs([relay])
    asker = await hub.new_asker(rich.pubkey_hex)
    pool_before = view.pool_available()
    marker = tag()
    rid = await asker.send(f"why is the sky blue? {marker}", protocol)
    [reply] = await asker.exactly(rid)
    assert reply.protocol == protocol
    footer = assert_answer(reply)
    assert "free" in footer

    job = await job_in(view, rid, "done")
    estimate, actual = cost(DEFAULT_PRICING, usage_of(ai_server, rich.config.ai_scenario, marker))
    assert (job["serve"], job["estimate_msat"], job["actual_msat"]) == ("free", estimate, actual)
    assert job["absorbed_msat"] == actual and not job["charged_msat"] and not job["paid_msat"]
    assert job["refund_msat"] == 0 and job["invoice_hash"] is None
    assert view.pool_available() == pool_before - actual
    assert view.balance(asker.pubkey) == 0
    assert_daily(view, asker.pubkey, actual, 1)
    asker.assert_clean()
    rich.ledger_check()


async def test_free_work_failure_releases_the_pool(rich: AgentProcess, hubs: HubMaker,
                                                   relay: str) -> None:
    view = view_of(rich)
    hub = await hubs([relay])
    asker = await hub.new_asker(rich.pubkey_hex)
    pool_before = view.pool_available()
    rid = await asker.send(f"this one fails [[fail]] {tag()}")
    [reply] = await asker.exactly(rid)
    assert find_bolt11(reply.text) is None
    job = await job_in(view, rid, "failed")
    assert job["serve"] == "free" and not job["absorbed_msat"] and job["refund_msat"] == 0
    assert view.pool_available() == pool_before
    assert_daily(view, asker.pubkey, 0, 0)
    rich.ledger_check()


# -- partial ------------------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "answer_tokens"), [("nip17", 64), ("nip04", 12)])
async def test_partial(rich: AgentProcess, hubs: HubMaker, relay: str, payer: LnbitsUser,
                       protocol: Protocol, answer_tokens: int, ai_server: AiTestServer) -> None:
    view = view_of(rich)
    hub = await hubs([relay])
    asker = await hub.new_asker(rich.pubkey_hex)
    pool_before = view.pool_available()
    marker = tag()
    rid = await asker.send(f"{LONG_QUESTION} [[tokens:{answer_tokens}]] {marker}", protocol)
    [quote] = await asker.exactly(rid)
    job = await job_in(view, rid, "invoiced")
    assert job["serve"] == "partial" and job["absorb_msat"] == ALLOWANCE_MSAT
    work_amount = job["estimate_msat"] - ALLOWANCE_MSAT
    assert job["work_amount_msat"] == work_amount
    bolt11 = assert_quote(quote, whole_sats_up(work_amount))
    assert view.pool_available() == pool_before, "a quote must not lock pool funds"

    await payer.pay(bolt11)
    _, answer = await asker.exactly(rid, 2)
    assert answer.protocol == protocol
    assert_answer(answer, " ".join(VOCABULARY[i % len(VOCABULARY)]
                                   for i in range(answer_tokens)))
    job = await job_in(view, rid, "done")
    estimate, actual = cost(DEFAULT_PRICING, usage_of(ai_server, rich.config.ai_scenario, marker))
    assert (job["estimate_msat"], job["actual_msat"]) == (estimate, actual)
    paid = whole_sats_up(work_amount)
    user_charge = max(0, actual - ALLOWANCE_MSAT)
    pool_kept = min(actual, ALLOWANCE_MSAT)
    assert job["paid_msat"] == paid and job["charged_msat"] == user_charge
    assert job["absorbed_msat"] == pool_kept
    assert view.pool_available() == pool_before - pool_kept
    # the seed's refund: what the payment did not use (the invoice's rounding included), in
    # whole sats; its sub-sat rest is the asker's balance at once
    owed = paid - user_charge
    assert job["refund_msat"] == owed // 1000 * 1000
    assert job["refund_state"] == ("pending" if owed >= 1000 else "none")
    assert view.balance(asker.pubkey) == owed % 1000
    assert_daily(view, asker.pubkey, pool_kept, 1)
    asker.assert_clean()
    rich.ledger_check()


async def test_session_with_subsidy(rich: AgentProcess, hubs: HubMaker, relay: str,
                                    payer: LnbitsUser, ai_server: AiTestServer) -> None:
    """A prepaid balance that covers what the pool leaves: served at once, no invoice."""
    view = view_of(rich)
    hub = await hubs([relay])
    asker = await hub.new_asker(rich.pubkey_hex)
    await top_up(asker, payer, view, 20)
    pool_before = view.pool_available()
    marker = tag()
    rid = await asker.send(f"{LONG_QUESTION} [[tokens:64]] {marker}")
    [answer] = await asker.exactly(rid)
    assert find_bolt11(answer.text) is None
    job = await job_in(view, rid, "done")
    _, actual = cost(DEFAULT_PRICING, usage_of(ai_server, rich.config.ai_scenario, marker))
    subsidy = min(actual, ALLOWANCE_MSAT)
    assert job["serve"] == "session" and job["actual_msat"] == actual
    assert job["absorbed_msat"] == subsidy and job["charged_msat"] == actual - subsidy
    assert view.pool_available() == pool_before - subsidy
    assert view.balance(asker.pubkey) == 20_000 - (actual - subsidy)
    assert view.pending_debits(f"balance:{asker.pubkey}") == 0, "the rest of the hold released"
    rich.ledger_check()


async def test_session_when_the_balance_covers_what_the_pool_leaves(
        rich: AgentProcess, hubs: HubMaker, relay: str, payer: LnbitsUser) -> None:
    view = view_of(rich)
    hub = await hubs([relay])
    asker = await hub.new_asker(rich.pubkey_hex)
    await top_up(asker, payer, view, 5)  # the long question leaves ~3 sats to pay
    rid = await asker.send(f"{LONG_QUESTION} {tag()}")
    [answer] = await asker.exactly(rid)
    assert find_bolt11(answer.text) is None, "quoted although the balance covers the rest"
    assert (await job_in(view, rid, "done"))["serve"] == "session"


async def top_up(asker: Asker, payer: LnbitsUser, view: LedgerView, sats: int,
                 protocol: Protocol = "nip17") -> None:
    """``topup <sats>``, pay the invoice, wait until the ledger shows the balance."""
    before = view.balance(asker.pubkey)
    rid = await asker.send(f"topup {sats}", protocol)
    [reply] = await asker.exactly(rid)
    invoice = require_bolt11(reply.text)
    assert invoice.amount_msat == sats * 1000
    await payer.pay(invoice.bolt11)
    await until(lambda: view.balance(asker.pubkey) == before + sats * 1000,
                f"the top-up of {sats} sats credited")


# -- gate ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_gate_and_refund_kept_as_balance(
        bare: AgentProcess, hubs: HubMaker, relay: str, payer: LnbitsUser, protocol: Protocol,
        ai_server: AiTestServer) -> None:
    view = view_of(bare)
    hub = await hubs([relay])
    asker = await hub.new_asker(bare.pubkey_hex)
    marker = tag()
    rid = await asker.send(f"what is a zap? {marker}", protocol)
    [quote] = await asker.exactly(rid)
    job = await job_in(view, rid, "invoiced")
    assert job["serve"] == "gate" and job["absorb_msat"] == 0
    paid = whole_sats_up(job["estimate_msat"])
    bolt11 = assert_quote(quote, paid)

    await payer.pay(bolt11)
    _, answer = await asker.exactly(rid, 2)
    assert answer.protocol == protocol
    assert_answer(answer)
    job = await job_in(view, rid, "done")
    estimate, actual = cost(DEFAULT_PRICING, usage_of(ai_server, bare.config.ai_scenario, marker))
    assert (job["estimate_msat"], job["actual_msat"]) == (estimate, actual)
    assert job["paid_msat"] == paid and job["charged_msat"] == actual
    owed = paid - actual
    refund = job["refund_msat"]
    assert refund == owed // 1000 * 1000 > 0 and job["refund_state"] == "pending"
    assert view.pool_available() == 0 and not job["absorbed_msat"]
    assert view.balance(asker.pubkey) == owed % 1000

    # `refund` without an invoice keeps it as balance
    claim_id = await asker.send("refund", protocol)
    [claimed] = await asker.exactly(claim_id)
    assert "balance" in claimed.text.lower()
    job = await job_in(view, rid, "done")
    assert job["refund_state"] == "credited" and view.balance(asker.pubkey) == owed
    assert view.payouts(rid) == []
    bare.ledger_check()


async def test_refund_claimed_with_a_whole_sat_invoice(
        bare: AgentProcess, hubs: HubMaker, relay: str, payer: LnbitsUser,
        lnbits_user: Callable[..., LnbitsUser]) -> None:
    """What the work did not use comes back: whole sats claimed with an invoice, the sub-sat
    rest as balance (issue 8, whole sats on the wire)."""
    view = view_of(bare)
    hub = await hubs([relay])
    asker = await hub.new_asker(bare.pubkey_hex)
    wallet = lnbits_user("asker", 0)
    rid = await asker.send(f"a gated question {tag()}")
    [quote] = await asker.exactly(rid)
    await payer.pay(require_bolt11(quote.text).bolt11)
    await asker.exactly(rid, 2)
    job = await job_in(view, rid, "done")
    owed = job["paid_msat"] - job["charged_msat"]
    assert owed % 1000, "this scenario needs a refund with a sub-sat part"
    whole = owed // 1000
    assert job["refund_msat"] == whole * 1000
    assert view.balance(asker.pubkey) == owed % 1000
    invoice, payment_hash = await wallet.invoice(whole, "my refund")
    claim_id = await asker.send(f"refund {invoice}")
    [claimed] = await asker.exactly(claim_id)
    assert await wait_paid(wallet, payment_hash), f"refund not paid: {claimed.text}"
    job = await job_in(view, rid, "done")
    assert job["refund_state"] == "paid"
    payouts = view.payouts(rid)
    assert [(p["state"], p["amount_msat"]) for p in payouts] == [("paid", whole * 1000)]
    assert await wallet.balance_msat() == whole * 1000
    assert view.balance(asker.pubkey) == owed % 1000
    bare.ledger_check()


async def wait_paid(wallet: LnbitsUser, payment_hash: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await wallet.is_paid(payment_hash):
            return True
        await asyncio.sleep(0.2)
    return False


# -- sessions -----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_session(bare: AgentProcess, hubs: HubMaker, relay: str, payer: LnbitsUser,
                       protocol: Protocol, ai_server: AiTestServer) -> None:
    view = view_of(bare)
    hub = await hubs([relay])
    asker = await hub.new_asker(bare.pubkey_hex)
    await top_up(asker, payer, view, 20, protocol)
    marker = tag()
    rid = await asker.send(f"what is a session? {marker}", protocol)
    [answer] = await asker.exactly(rid)
    assert find_bolt11(answer.text) is None and answer.protocol == protocol
    assert_answer(answer)
    job = await job_in(view, rid, "done")
    _, actual = cost(DEFAULT_PRICING, usage_of(ai_server, bare.config.ai_scenario, marker))
    assert job["serve"] == "session" and job["invoice_hash"] is None
    assert job["charged_msat"] == actual and not job["absorbed_msat"]
    assert view.balance(asker.pubkey) == 20_000 - actual
    assert view.pending_debits(f"balance:{asker.pubkey}") == 0
    bare.ledger_check()


# -- work failure and timeout after payment -----------------------------------------------


async def test_work_failure_after_payment_refunds_everything(
        bare: AgentProcess, hubs: HubMaker, relay: str, payer: LnbitsUser,
        lnbits_user: Callable[..., LnbitsUser]) -> None:
    view = view_of(bare)
    hub = await hubs([relay])
    asker = await hub.new_asker(bare.pubkey_hex)
    wallet = lnbits_user("asker", 0)
    rid = await asker.send(f"this fails after payment [[fail]] {tag()}")
    [quote] = await asker.exactly(rid)
    invoice = require_bolt11(quote.text)
    await payer.pay(invoice.bolt11)
    _, told = await asker.exactly(rid, 2)
    assert "refund" in told.text.lower()
    job = await job_in(view, rid, "failed")
    paid = whole_sats_up(job["estimate_msat"])
    assert job["paid_msat"] == paid and job["refund_msat"] == paid
    assert job["refund_state"] == "pending" and not job["charged_msat"]
    assert view.posted("revenue") == sum(int(j["charged_msat"] or 0) for j in view.jobs())

    bolt11, payment_hash = await wallet.invoice(paid // 1000, "refund of a failed answer")
    await asker.ask(f"refund {bolt11}")
    assert await wait_paid(wallet, payment_hash)
    job = await job_in(view, rid, "failed")
    assert job["refund_state"] == "paid"
    assert await wallet.balance_msat() == paid
    bare.ledger_check()


async def test_work_timeout_after_payment_refund_kept_as_balance(
        bare: AgentProcess, hubs: HubMaker, relay: str, payer: LnbitsUser) -> None:
    view = view_of(bare)
    hub = await hubs([relay])
    asker = await hub.new_asker(bare.pubkey_hex)
    rid = await asker.send(f"this one stalls [[stall]] {tag()}", "nip04")
    [quote] = await asker.exactly(rid)
    await payer.pay(require_bolt11(quote.text).bolt11)
    _, told = await asker.exactly(rid, 2, timeout=30)
    assert "refund" in told.text.lower()
    job = await job_in(view, rid, "failed")
    paid = job["paid_msat"]
    assert paid == whole_sats_up(job["estimate_msat"]) and job["refund_msat"] == paid

    kept = await asker.ask("refund", "nip04")
    assert "balance" in kept.text.lower()
    job = await job_in(view, rid, "failed")
    assert job["refund_state"] == "credited"
    assert view.balance(asker.pubkey) == paid
    bare.ledger_check()


# -- the pool drained between the quote and the payment -----------------------------------


async def test_pool_drained_before_payment(tight: AgentProcess, hubs: HubMaker, relay: str,
                                           payer: LnbitsUser, ai_server: AiTestServer,
                                           lnbits_user: Callable[..., LnbitsUser]) -> None:
    view = view_of(tight)
    hub = await hubs([relay])
    asker, other = await hub.new_askers(tight.pubkey_hex, 2)
    wallet = lnbits_user("asker", 0)
    pool_before = view.pool_available()
    assert pool_before == ALLOWANCE_MSAT

    rid = await asker.send(f"{LONG_QUESTION} {tag()}")
    [quote] = await asker.exactly(rid)
    job = await job_in(view, rid, "invoiced")
    assert job["serve"] == "partial" and job["absorb_msat"] == ALLOWANCE_MSAT
    assert view.pool_available() == pool_before

    # someone else's free answer takes part of the pool meanwhile
    marker = tag()
    other_id = await other.send(f"short and free {marker}")
    await other.exactly(other_id)
    other_job = await job_in(view, other_id, "done")
    assert other_job["serve"] == "free"
    _, other_actual = cost(DEFAULT_PRICING,
                           usage_of(ai_server, tight.config.ai_scenario, marker))
    assert view.pool_available() == pool_before - other_actual < ALLOWANCE_MSAT

    await payer.pay(require_bolt11(quote.text).bolt11)
    _, told = await asker.exactly(rid, 2)
    assert "refund" in told.text.lower()
    job = await job_in(view, rid, "failed")
    paid = whole_sats_up(job["work_amount_msat"])
    assert job["paid_msat"] == paid and job["refund_msat"] == paid
    assert job["refund_state"] == "pending" and not job["absorbed_msat"]
    assert view.pool_available() == pool_before - other_actual, "no work ran on changed terms"
    assert_daily(view, asker.pubkey, 0, 0)
    assert not [r for r in ai_server.scenario_records(tight.config.ai_scenario)
                if r.path.endswith("/chat/completions") and LONG_QUESTION in str(r.body)], \
        "the model was asked anyway"

    bolt11, payment_hash = await wallet.invoice(paid // 1000, "refund: pool drained")
    await asker.ask(f"refund {bolt11}")
    assert await wait_paid(wallet, payment_hash)
    job = await job_in(view, rid, "failed")
    assert job["refund_state"] == "paid"
    tight.ledger_check()


# -- the invoice nobody pays: last, so the minute ran during the scenarios above -------------


async def test_invoice_expiry_moves_nothing(expiring: Expiring, relay: str) -> None:
    assert not expiring.failure, expiring.failure
    agent = expiring.agent
    view = view_of(agent)
    async with Hub([relay]) as hub:
        asker = Asker(hub, agent.pubkey_hex, expiring.keys)
        await hub.watch([asker])
        await asker.reply_to(expiring.request_id)  # the quote, read back from the relay
        left = EXPIRY_WAIT_S - (time.monotonic() - expiring.quoted_at)
        replies = await asker.exactly(expiring.request_id, 2, timeout=max(left, 1.0),
                                      settle_s=2.0)
    # read back from the relay: stored events come newest first, so tell them by content
    quotes = [r for r in replies if find_bolt11(r.text)]
    told = [r for r in replies if not find_bolt11(r.text)]
    assert len(quotes) == 1 and len(told) == 1, [r.text[:60] for r in replies]
    assert "expired" in told[0].text.lower()
    job = await job_in(view, expiring.request_id, "expired")
    assert not job["paid_msat"] and job["refund_msat"] == 0
    assert view.transfers(expiring.request_id) == [], "an expired invoice moved money"
    assert view.balance(asker.pubkey) == 0
    agent.ledger_check()
