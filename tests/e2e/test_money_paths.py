"""The money paths of issue 8 that were proved only in one process, now through ``timmy run``:
late, double and over-payment (each the payer's balance, the payer told once), refunds paid by
themselves to the lud16 of the asker's profile, the payer's notice across a SIGKILL, and
``auto_refund = false``.

One agent serves every case, each with its own fresh askers. Its pool is empty, so every
question is gated: a quote with an LNbits invoice. Its own Lightning address (``[profile]
lud16``) is an LNURL/NIP-57 provider on LNbits that publishes real zap receipts, so a zap whose
request names a quote (the quote's NIP-04 event id) pays that quote's job. Its invoices live
``EXPIRY_S``: the late case's quote is asked first, and paid (its bolt11, then a zap) once it
expired while the other cases ran. The askers who get refunds by themselves have a kind-0
profile whose lud16 is another LNURL provider on LNbits: what reaches it is read from that
provider's LNbits wallet.

Every case ends with ``timmy ledger check`` passing and the exact ledger effect read from the
SQLite file, against costs computed from the AI test server's own records
(``tests/e2e/money.py``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import nostr_sdk as sdk
import pytest

from bot.nostr.event import sign_event
from bot.wallets.bolt11 import DecodedInvoice, decode_invoice
from bot.wallets.lightning_address import AgentAddress
from bot.wallets.lnurl import LnurlClient
from storage import Database, Ledger, Limits, PaymentVerdict
from tests.e2e.agent_process import DEFAULT_PRICING, AgentProcess, WalletSetup
from tests.e2e.askers import Asker, Hub, Reply
from tests.e2e.conftest import AgentFactory, HubMaker
from tests.e2e.ledger_view import LedgerView, Row
from tests.e2e.lightning import LnbitsUser, find_bolt11, require_bolt11
from tests.e2e.money import cost, job_in, until, usage_of
from tests.fixtures.ai_server import AiTestServer
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer
from tests.fixtures.lnurl_provider import LnurlProvider
from tests.fixtures.relay import RelayProcess

EXPIRY_S = 30
"""The agent's invoices live this long: the late case waits it out (during the other cases);
every other case pays its quote within a few seconds."""
SETTLEMENT_POLL_S = 3600
"""Payments come by the LNbits websocket; the poll (the fallback) would look the late case's
invoice up after its expiry, and LNbits marks an expired invoice it is asked about as failed and
then no longer lets it be paid: the expired bolt11 is paid before anything looks it up."""
SETTLE_S = 2.0
"""How long a case waits for a second notice or payout that must not come."""
REFUND_ADDRESSES = ("cheap", "failed", "kept")


def tag() -> str:
    return f"#{uuid.uuid4().hex[:10]}"


# -- the agent and its surroundings -------------------------------------------------------


@dataclass
class Providers:
    """LNURL providers on LNbits: the agent's own address, and the askers' refund addresses."""

    agent: LnurlProvider
    refunds: dict[str, LnurlProvider]
    lnbits_url: str

    def all(self) -> list[LnurlProvider]:
        return [self.agent, *self.refunds.values()]

    async def received_msat(self, name: str) -> int:
        """What reached the refund address ``name``: its provider's LNbits wallet balance."""
        return await LnbitsUser(self.lnbits_url, self.refunds[name].account).balance_msat()


@pytest.fixture(scope="module")
def relay(e2e_relays: list[RelayProcess]) -> str:
    return e2e_relays[0].url


@pytest.fixture(scope="module")
def providers(lnbits_server: LnbitsServer,
              lnbits_new_wallet: Callable[..., LnbitsAccount]) -> Iterator[Providers]:
    made = Providers(
        LnurlProvider(lnbits_server.url, lnbits_new_wallet("lnurlp-agent"), "timmy"),
        {name: LnurlProvider(lnbits_server.url, lnbits_new_wallet(f"lnurlp-{name}"), name)
         for name in REFUND_ADDRESSES},
        lnbits_server.url)
    for provider in made.all():
        provider.start()
    try:
        yield made
    finally:
        for provider in made.all():
            provider.stop()


@pytest.fixture(scope="module")
def agent(agent_factory: AgentFactory, relay: str, providers: Providers,
          agent_lnbits: Callable[[], tuple[WalletSetup, LnbitsUser]]) -> AgentProcess:
    lnbits = agent_lnbits()[0]
    hosts = sorted({p.host for p in providers.all()})
    wallet = WalletSetup({**lnbits.table, "lnurl_insecure_hosts": hosts}, lnbits.env)
    return agent_factory([relay], wallet, profile={"lud16": providers.agent.address},
                         service={"invoice_expiry_s": EXPIRY_S,
                                  "settlement_poll_s": SETTLEMENT_POLL_S})


@pytest.fixture(scope="module")
def payer(lnbits_user: Callable[..., LnbitsUser]) -> LnbitsUser:
    return lnbits_user("money-payer", 100_000)


@dataclass
class LateQuote:
    """The late case's quote, asked before every other case so its expiry runs meanwhile
    (``failure`` says why there is none: the late case reports it, the others run on)."""

    keys: sdk.Keys
    request_id: str = ""
    quote_event_id: str = ""
    invoice: DecodedInvoice | None = None
    failure: str = ""


@pytest.fixture(scope="module", autouse=True)
def late_quote(agent: AgentProcess, relay: str) -> LateQuote:
    state = LateQuote(sdk.Keys.generate())

    async def ask() -> None:
        async with Hub([relay]) as hub:
            asker = hub.asker(agent.pubkey_hex, state.keys)
            await hub.watch([asker])
            rid = await asker.send(f"a question paid too late {tag()}", "nip04")
            quote = await asker.reply_to(rid)
            state.request_id, state.quote_event_id = rid, quote.event_id
            state.invoice = require_bolt11(quote.text)

    try:
        asyncio.run(ask())
    except AssertionError as exc:
        state.failure = f"no quote to pay late: {exc}"
    return state


# -- helpers ------------------------------------------------------------------------------


async def zap(asker: Asker, agent: AgentProcess, providers: Providers, relay: str,
              quote_event_id: str, amount_msat: int, payer: LnbitsUser) -> str:
    """Zap the agent ``amount_msat`` naming ``quote_event_id``: the zap request signed by the
    asker with nostr-sdk, its invoice from the agent's LNURL provider, paid from ``payer``'s
    LNbits wallet; the provider publishes the receipt. Returns the zap's payment hash."""
    provider = providers.agent
    async with httpx.AsyncClient(timeout=30.0) as http:
        lnurl = LnurlClient(http, insecure_hosts=frozenset({provider.host}))
        address = AgentAddress(provider.address, lnurl)
        request = sdk.EventBuilder(sdk.Kind(9734), "").tags([
            sdk.Tag.parse(["relays", relay]), sdk.Tag.parse(["amount", str(amount_msat)]),
            sdk.Tag.parse(["lnurl", address.lnurl]),
            sdk.Tag.public_key(sdk.PublicKey.parse(agent.pubkey_hex)),
            sdk.Tag.event(sdk.EventId.parse(quote_event_id))]).finalize(asker.keys)
        got = await lnurl.fetch_invoice(await address.pay_request(), amount_msat,
                                        zap_request_json=request.as_json())
    invoice = decode_invoice(got.bolt11)
    assert invoice.amount_msat == amount_msat
    await payer.pay(got.bolt11)
    return invoice.payment_hash


async def notices(asker: Asker, count: int, timeout: float = 30.0) -> list[Reply]:
    """The ``count`` notices that name no request (what became of a payment), in arrival
    order, and no other one within ``SETTLE_S``."""
    await until(lambda: len(asker.unthreaded()) >= count, f"{asker!r}: {count} payment notices",
                timeout)
    await asyncio.sleep(SETTLE_S)
    found = asker.unthreaded()
    assert len(found) == count, f"{len(found)} notices: {[n.text[:80] for n in found]}"
    return found


async def told_once(asker: Asker, timeout: float = 30.0) -> Reply:
    """The one notice that names no request, and no second one."""
    [notice] = await notices(asker, 1, timeout)
    return notice


def transfers_of(view: LedgerView, key_prefix: str) -> list[tuple[str, str, int]]:
    """``(key, code, amount)`` of the transfers whose key starts with ``key_prefix``."""
    return [(str(t["key"]), str(t["code"]), int(t["amount_msat"]))
            for t in view.query("SELECT * FROM transfers WHERE key LIKE ? ORDER BY id",
                                (f"{key_prefix}%",))]


async def paid_gate_answer(asker: Asker, payer: LnbitsUser, view: LedgerView,
                           question: str) -> tuple[str, Reply, Reply]:
    """Ask over NIP-04, pay the quote's bolt11: ``(request id, quote, second reply)``."""
    rid = await asker.send(question, "nip04")
    quote = await asker.reply_to(rid)
    job = await job_in(view, rid, "invoiced")
    assert job["serve"] == "gate"
    await payer.pay(require_bolt11(quote.text).bolt11)
    second = await asker.reply_to(rid, 1, timeout=30.0)
    return rid, quote, second


def assert_settled(view: LedgerView, job: Row, actual_msat: int) -> int:
    """A gate job answered: charged its actual cost; returns what it owed back (paid -
    actual: whole sats as the refund, the sub-sat rest as balance)."""
    assert job["actual_msat"] == actual_msat and job["charged_msat"] == actual_msat
    owed = int(job["paid_msat"]) - actual_msat
    assert job["refund_msat"] == owed // 1000 * 1000 > 0
    return owed


def publish_lud16(asker: Asker, address: str) -> sdk.Event:
    """The asker's kind-0 profile with ``address`` as its lud16."""
    content = json.dumps({"name": "asker", "lud16": address})
    return sdk.Event.from_json(sign_event(asker.bot_keys, 0, content, []).to_json())


# -- late, double and over-payment --------------------------------------------------------


async def test_double_payment_bolt11_then_a_zap(
        agent: AgentProcess, hubs: HubMaker, relay: str, payer: LnbitsUser,
        providers: Providers, ai_server: AiTestServer) -> None:
    view = LedgerView(agent.db_path)
    asker = await (await hubs([relay])).new_asker(agent.pubkey_hex)
    marker = tag()
    rid, quote, answer = await paid_gate_answer(asker, payer, view, f"paid twice {marker}")
    assert "you paid" in answer.text
    job = await job_in(view, rid, "done")
    _, actual = cost(DEFAULT_PRICING, usage_of(ai_server, agent.config.ai_scenario, marker))
    owed = assert_settled(view, job, actual)

    payment_hash = await zap(asker, agent, providers, relay, quote.event_id, 3_000, payer)
    await until(lambda: view.balance(asker.pubkey) == owed % 1000 + 3_000,
                "the second payment credited as balance")
    notice = await told_once(asker)
    assert "already paid" in notice.text and "3 sats are now your balance" in notice.text
    assert transfers_of(view, f"zap:{payment_hash}") == [
        (f"zap:{payment_hash}:balance", "duplicate", 3_000)]
    job = await job_in(view, rid, "done")
    assert job["paid_msat"] == require_bolt11(quote.text).amount_msat, "paid once, not twice"
    assert job["refund_state"] == "pending"
    assert len(asker.replies_to(rid)) == 2, "the second payment reopened nothing"
    asker.assert_clean()
    agent.ledger_check()


async def test_over_payment_by_a_zap_of_the_quote(
        agent: AgentProcess, hubs: HubMaker, relay: str, payer: LnbitsUser,
        providers: Providers, ai_server: AiTestServer) -> None:
    view = LedgerView(agent.db_path)
    asker = await (await hubs([relay])).new_asker(agent.pubkey_hex)
    marker = tag()
    rid = await asker.send(f"paid too much {marker}", "nip04")
    quote = await asker.reply_to(rid)
    invoiced = require_bolt11(quote.text).amount_msat
    assert invoiced is not None
    payment_hash = await zap(asker, agent, providers, relay, quote.event_id, invoiced + 4_000,
                             payer)
    answer = await asker.reply_to(rid, 1, timeout=30.0)
    assert "you paid" in answer.text
    notice = await told_once(asker)
    assert "more than the invoice" in notice.text and "4 sats" in notice.text

    job = await job_in(view, rid, "done")
    assert job["paid_msat"] == invoiced
    _, actual = cost(DEFAULT_PRICING, usage_of(ai_server, agent.config.ai_scenario, marker))
    owed = assert_settled(view, job, actual)
    assert transfers_of(view, f"zap:{payment_hash}") == [
        (f"zap:{payment_hash}:escrow", "payment", invoiced),
        (f"zap:{payment_hash}:balance", "overpaid", 4_000)]
    assert view.balance(asker.pubkey) == 4_000 + owed % 1000
    assert job["refund_state"] == "pending"
    assert len(asker.replies_to(rid)) == 2
    asker.assert_clean()
    agent.ledger_check()


# -- refunds paid by themselves to the asker's lud16 --------------------------------------


async def test_auto_refund_of_a_cheaper_answer_to_the_askers_lud16(
        agent: AgentProcess, hubs: HubMaker, relay: str, payer: LnbitsUser,
        providers: Providers, ai_server: AiTestServer) -> None:
    view = LedgerView(agent.db_path)
    hub = await hubs([relay])
    asker = await hub.new_asker(agent.pubkey_hex)
    await hub.publish(publish_lud16(asker, providers.refunds["cheap"].address))
    marker = tag()
    rid, _, answer = await paid_gate_answer(asker, payer, view, f"a cheap answer {marker}")
    job = await job_in(view, rid, "done")
    _, actual = cost(DEFAULT_PRICING, usage_of(ai_server, agent.config.ai_scenario, marker))
    owed = assert_settled(view, job, actual)
    refund = owed // 1000 * 1000
    assert f"on its way to {providers.refunds['cheap'].address}" in answer.text

    await until(lambda: (view.job(rid) or {}).get("refund_state") == "paid",
                "the refund paid to the lud16")
    await asyncio.sleep(SETTLE_S)
    assert [(p["state"], p["amount_msat"]) for p in view.payouts(rid)] == [("paid", refund)]
    assert await providers.received_msat("cheap") == refund
    assert view.balance(asker.pubkey) == owed % 1000
    assert len(asker.replies_to(rid)) == 2 and not asker.unthreaded()
    agent.ledger_check()


async def test_auto_refund_of_a_work_failure_to_the_askers_lud16(
        agent: AgentProcess, hubs: HubMaker, relay: str, payer: LnbitsUser,
        providers: Providers) -> None:
    view = LedgerView(agent.db_path)
    hub = await hubs([relay])
    asker = await hub.new_asker(agent.pubkey_hex)
    await hub.publish(publish_lud16(asker, providers.refunds["failed"].address))
    rid, quote, told = await paid_gate_answer(asker, payer, view,
                                              f"this fails after payment [[fail]] {tag()}")
    paid = require_bolt11(quote.text).amount_msat
    assert "could not answer" in told.text
    assert f"on its way to {providers.refunds['failed'].address}" in told.text
    job = await job_in(view, rid, "failed")
    assert job["paid_msat"] == paid and job["refund_msat"] == paid and not job["charged_msat"]
    await until(lambda: (view.job(rid) or {}).get("refund_state") == "paid",
                "the refund paid to the lud16")
    await asyncio.sleep(SETTLE_S)
    assert [(p["state"], p["amount_msat"]) for p in view.payouts(rid)] == [("paid", paid)]
    assert await providers.received_msat("failed") == paid
    assert view.balance(asker.pubkey) == 0
    assert len(asker.replies_to(rid)) == 2
    agent.ledger_check()


# -- the late payment: its quote expired during the cases above ---------------------------


async def test_late_payment_of_an_expired_quote_by_its_bolt11_and_by_a_zap(
        agent: AgentProcess, late_quote: LateQuote, relay: str, payer: LnbitsUser,
        providers: Providers) -> None:
    """Both ways money can still come for an expired quote: its own bolt11 (LNbits pays an
    expired invoice between two of its wallets as long as nobody asked it about the invoice
    since it expired: the settlement path) and a zap naming it (the zap path). Each is all the
    payer's balance, each told once, and the quote's expiry once."""
    assert not late_quote.failure, late_quote.failure
    invoice = late_quote.invoice
    assert invoice is not None and invoice.amount_msat is not None
    amount = invoice.amount_msat
    view = LedgerView(agent.db_path)
    async with Hub([relay]) as hub:
        asker = hub.asker(agent.pubkey_hex, late_quote.keys)
        await hub.watch([asker])
        await asker.reply_to(late_quote.request_id)  # the quote, read back from the relay
        expires_at = invoice.created_at + invoice.expiry_s
        await asyncio.sleep(max(0.0, expires_at + 1 - time.time()))
        await payer.pay(invoice.bolt11)
        [by_bolt11] = await notices(asker, 1)
        zap_hash = await zap(asker, agent, providers, relay, late_quote.quote_event_id, 2_000,
                             payer)
        _, by_zap = await notices(asker, 2)
        replies = await asker.exactly(late_quote.request_id, 2, timeout=30.0)
    for notice, sats in ((by_bolt11, amount // 1000), (by_zap, 2)):
        assert "after the quote expired" in notice.text
        assert f"{sats} sats are now your balance" in notice.text
    expired = [r for r in replies if not find_bolt11(r.text)]
    assert len(expired) == 1 and "expired" in expired[0].text
    job = await job_in(view, late_quote.request_id, "expired")
    assert not job["paid_msat"] and job["refund_msat"] == 0
    assert [(t["key"], t["code"], t["amount_msat"])
            for t in view.transfers(late_quote.request_id)] == [
        (f"pay:{invoice.payment_hash}:balance", "late", amount),
        (f"zap:{zap_hash}:balance", "late", 2_000)], "late money is all the job moved"
    assert view.balance(asker.pubkey) == amount + 2_000
    agent.ledger_check()


# -- the payer's notice across a SIGKILL --------------------------------------------------


async def test_a_payment_counted_before_a_sigkill_is_told_once_after_the_restart(
        agent: AgentProcess, hubs: HubMaker, relay: str, payer: LnbitsUser) -> None:
    """A SIGKILL cannot be aimed between the ledger write of a payment and the outbox insert of
    its notice, so the ledger is left here exactly as such a kill leaves it: the agent is
    killed, and the payment (a second payment of an answered job, as a zap would record it) is
    written to its SQLite file by the same storage code, with no notice stored. Nothing
    delivers that payment again; after the restart the asker is told once."""
    view = LedgerView(agent.db_path)
    asker = await (await hubs([relay])).new_asker(agent.pubkey_hex)
    rid, _, _ = await paid_gate_answer(asker, payer, view, f"answered, then a crash {tag()}")
    job = await job_in(view, rid, "done")
    balance_before = view.balance(asker.pubkey)

    agent.kill()
    payment_hash = uuid.uuid4().hex * 2
    db = await Database.open(agent.db_path)
    try:
        counted = await Ledger(db, Limits(daily_free_msat=0, daily_free_jobs=0)).confirm_payment(
            rid, 5_000, f"zap:{payment_hash}")
    finally:
        await db.close()
    assert counted.result is PaymentVerdict.DUPLICATE
    assert not view.query("SELECT 1 FROM outbox WHERE key = ?", (f"settled:{payment_hash}",))
    agent.start()

    notice = await told_once(asker)
    assert "already paid" in notice.text and "5 sats are now your balance" in notice.text
    assert view.balance(asker.pubkey) == balance_before + 5_000
    assert (await job_in(view, rid, "done"))["paid_msat"] == job["paid_msat"]
    assert len(asker.replies_to(rid)) == 2
    assert len(view.query("SELECT 1 FROM outbox WHERE key = ?",
                          (f"settled:{payment_hash}",))) == 1, "one NIP-04 notice stored"
    agent.ledger_check()


# -- auto_refund off: the refund waits, claimable -----------------------------------------


async def test_auto_refund_off_the_refund_stays_claimable(
        agent: AgentProcess, hubs: HubMaker, relay: str, payer: LnbitsUser,
        providers: Providers, ai_server: AiTestServer) -> None:
    agent.config.service = {**agent.config.service, "auto_refund": False}
    agent.write_config()
    agent.restart()
    view = LedgerView(agent.db_path)
    hub = await hubs([relay])
    asker = await hub.new_asker(agent.pubkey_hex)
    address = providers.refunds["kept"].address
    await hub.publish(publish_lud16(asker, address))
    marker = tag()
    rid, _, answer = await paid_gate_answer(asker, payer, view, f"keep my refund {marker}")
    job = await job_in(view, rid, "done")
    _, actual = cost(DEFAULT_PRICING, usage_of(ai_server, agent.config.ai_scenario, marker))
    owed = assert_settled(view, job, actual)
    refund = owed // 1000 * 1000
    assert "waiting for you" in answer.text and address not in answer.text
    await asyncio.sleep(SETTLE_S)
    job = await job_in(view, rid, "done")
    assert job["refund_state"] == "pending" and view.payouts(rid) == []
    assert await providers.received_msat("kept") == 0

    claimed = await asker.ask("refund")
    assert f"Refund of {refund // 1000} sats" in claimed.text and address in claimed.text
    await until(lambda: (view.job(rid) or {}).get("refund_state") == "paid",
                "the claimed refund paid to the lud16")
    assert [(p["state"], p["amount_msat"]) for p in view.payouts(rid)] == [("paid", refund)]
    assert await providers.received_msat("kept") == refund
    assert view.balance(asker.pubkey) == owed % 1000
    agent.ledger_check()
