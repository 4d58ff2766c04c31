"""NIP-90 end to end: the agent as its own process, a real relay, LNbits, an LNURL/NIP-57
provider for its Lightning address, and nostr-sdk as the customer (its event builder for the
kind-5050 requests and deletions, its own NIP-04 and NIP-44 for encrypted params).

One agent serves every case of this module, each with its own fresh customer keys (so no case
sees another's allowance or replies). Its free allowance is 5 sats a day: a request whose
``max_tokens`` param is 10 is estimated under it (free); one at the operator's 64 tokens is
estimated above it (partial: the pool absorbs the 5 sats, the customer pays the rest by the
bolt11 of the ``payment-required`` feedback, or by a zap of that feedback event).

Every case ends with ``timmy ledger check`` passing and the exact ledger effect read from the
SQLite file, against costs computed from the AI test server's own records
(``tests/e2e/money.py``).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta

import httpx
import nostr_sdk as sdk
import pytest

from bot.wallets.lightning_address import AgentAddress
from bot.wallets.lnurl import LnurlClient
from tests.e2e.agent_process import DEFAULT_PRICING, AgentProcess, WalletSetup
from tests.e2e.askers import Hub
from tests.e2e.conftest import AgentFactory
from tests.e2e.ledger_view import LedgerView, Row
from tests.e2e.lightning import LnbitsUser
from tests.e2e.money import Usage, cost, fund_pool, job_in, until, usage_of, whole_sats_up
from tests.fixtures.ai_server import AiTestServer
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer
from tests.fixtures.lnurl_provider import LnurlProvider
from tests.fixtures.relay import RelayProcess

WAIT_S = 20.0
SETTLE_S = 1.0
ALLOWANCE_MSAT = 5_000
POOL_MSAT = 1_000_000
FREE = ["param", "max_tokens", "10"]
"""A request with this param is estimated under the allowance: free."""


def tag() -> str:
    return f"#{uuid.uuid4().hex[:10]}"


def tags_of(event: sdk.Event) -> list[list[str]]:
    return [t.to_vec() for t in event.tags()]


def status_of(event: sdk.Event) -> str:
    return next((t[1] for t in tags_of(event) if t[0] == "status" and len(t) > 1), "")


def amount_of(event: sdk.Event) -> list[str]:
    return next(t for t in tags_of(event) if t[0] == "amount")


# -- the agent and its surroundings -------------------------------------------------------


@pytest.fixture(scope="module")
def relay(e2e_relays: list[RelayProcess]) -> str:
    return e2e_relays[0].url


@pytest.fixture(scope="module")
def provider(lnbits_server: LnbitsServer,
             lnbits_new_wallet: Callable[..., LnbitsAccount]) -> Iterator[LnurlProvider]:
    """The agent's Lightning address: zaps to it publish receipts on the relay."""
    found = LnurlProvider(lnbits_server.url, lnbits_new_wallet("lnurlp"), "timmy")
    found.start()
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="module")
def agent(agent_factory: AgentFactory, relay: str, provider: LnurlProvider,
          agent_lnbits: Callable[[], tuple[WalletSetup, LnbitsUser]]) -> AgentProcess:
    lnbits = agent_lnbits()[0]
    wallet = WalletSetup({**lnbits.table, "lnurl_insecure_hosts": [provider.host]}, lnbits.env)
    started = agent_factory([relay], wallet, profile={"lud16": provider.address},
                            limits={"daily_free_msat": ALLOWANCE_MSAT, "daily_free_jobs": 5})
    asyncio.run(fund_pool(started.db_path, POOL_MSAT, f"e2e:nip90:{started.pubkey_hex[:8]}"))
    return started


@pytest.fixture(scope="module")
def payer(lnbits_user: Callable[..., LnbitsUser]) -> LnbitsUser:
    return lnbits_user("nip90-payer", 100_000)


@pytest.fixture
async def client(relay: str) -> AsyncIterator[sdk.Client]:
    found = sdk.Client()
    await found.add_relay(sdk.RelayUrl.parse(relay))
    await found.connect()
    try:
        yield found
    finally:
        await found.shutdown()


class Customer:
    """One nostr-sdk customer (fresh keys): builds, sends and deletes requests, and reads the
    agent's feedback and results about them from the relay."""

    def __init__(self, client: sdk.Client, agent: AgentProcess) -> None:
        self.client = client
        self.keys = sdk.Keys.generate()
        self.pubkey = self.keys.public_key().to_hex()
        self.agent = sdk.PublicKey.parse(agent.pubkey_hex)

    def build(self, *tags: list[str], content: str = "", targeted: bool = True) -> sdk.Event:
        built = [sdk.Tag.parse(t) for t in tags]
        if targeted:
            built.append(sdk.Tag.public_key(self.agent))
        return sdk.EventBuilder(sdk.Kind(5050), content).tags(built).finalize(self.keys)

    def encrypted(self, scheme: str, *tags: list[str]) -> sdk.Event:
        """A request whose ``i`` and ``param`` tags are encrypted to the agent in ``content``."""
        params = json.dumps(list(tags))
        secret = (sdk.nip44_encrypt(self.keys.secret_key(), self.agent, params,
                                    sdk.Nip44Version.V2) if scheme == "nip44"
                  else sdk.nip04_encrypt(self.keys.secret_key(), self.agent, params))
        return self.build(["encrypted"], content=secret)

    def decrypt(self, scheme: str, payload: str) -> str:
        if scheme == "nip44":
            return str(sdk.nip44_decrypt(self.keys.secret_key(), self.agent, payload))
        return str(sdk.nip04_decrypt(self.keys.secret_key(), self.agent, payload))

    async def send(self, event: sdk.Event) -> sdk.Event:
        out = await self.client.send_event(event)
        assert out.success, f"the relay refused {event.id().to_hex()}: {out.failed}"
        return event

    async def ask(self, *tags: list[str]) -> sdk.Event:
        return await self.send(self.build(*tags))

    async def delete(self, request: sdk.Event, *, k: bool = True,
                     by: sdk.Keys | None = None) -> None:
        """A kind-5 deletion of ``request`` (``k`` 5050 as NIP-09 recommends, or without)."""
        tags = [sdk.Tag.event(request.id())] + ([sdk.Tag.parse(["k", "5050"])] if k else [])
        await self.send(sdk.EventBuilder(sdk.Kind(5), "").tags(tags).finalize(by or self.keys))

    async def about(self, request: sdk.Event) -> list[sdk.Event]:
        """The agent's feedback and results about ``request``, as stored on the relay."""
        flt = (sdk.Filter().kinds([sdk.Kind(7000), sdk.Kind(6050)])
               .author(self.agent).pubkey(self.keys.public_key()).event(request.id()))
        events = await self.client.fetch_events(sdk.ReqTarget.auto([flt]),
                                                timedelta(seconds=2))
        return list(events)

    async def wait(self, request: sdk.Event, kind: int, status: str | None = None
                   ) -> sdk.Event:
        """The agent's event of ``kind`` (and feedback ``status``) about ``request``."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for event in await self.about(request):
                if event.kind().as_u16() == kind and (status is None
                                                      or status_of(event) == status):
                    return event
            await asyncio.sleep(0.1)
        raise AssertionError(f"no kind {kind} {status or ''} about {request.id().to_hex()}")

    async def exactly(self, request: sdk.Event, *expected: str) -> list[sdk.Event]:
        """Once the last of ``expected`` arrived and ``SETTLE_S`` more passed: the events about
        ``request`` are exactly ``expected`` (``"6050"`` or a feedback status), sorted."""
        last = expected[-1]
        await self.wait(request, 6050 if last == "6050" else 7000,
                        None if last == "6050" else last)
        await asyncio.sleep(SETTLE_S)
        events = await self.about(request)
        got = sorted("6050" if e.kind().as_u16() == 6050 else status_of(e) for e in events)
        assert got == sorted(expected), f"events about the request: {got}, not {expected}"
        return events


def partial_effect(view: LedgerView, job: Row, usage: Usage) -> tuple[int, int, int]:
    """The exact effect of a paid partial job once done: checks the job row and returns
    ``(paid, pool_kept, balance)``: what the customer paid, what the pool gave, and the
    sub-sat rest credited to the customer's balance."""
    estimate, actual = cost(DEFAULT_PRICING, usage)
    paid = whole_sats_up(estimate - ALLOWANCE_MSAT)
    charge = max(0, actual - ALLOWANCE_MSAT)
    kept = min(actual, ALLOWANCE_MSAT)
    owed = paid - charge
    assert (job["serve"], job["estimate_msat"], job["actual_msat"]) == ("partial", estimate,
                                                                        actual)
    assert job["absorb_msat"] == ALLOWANCE_MSAT and job["paid_msat"] == paid
    assert job["charged_msat"] == charge and job["absorbed_msat"] == kept
    assert job["refund_msat"] == owed // 1000 * 1000
    assert job["refund_state"] == ("pending" if owed >= 1000 else "none")
    return paid, kept, owed % 1000


def nothing_moved(view: LedgerView, job_id: str) -> None:
    """No money moved for ``job_id``: every transfer of it was voided (or there is none)."""
    for transfer in view.transfers(job_id):
        assert str(transfer["state"]) != "posted", f"a posted transfer: {transfer}"


async def job_refund_paid(view: LedgerView, job_id: str) -> None:
    def paid() -> bool:
        job = view.job(job_id)
        return job is not None and job["refund_state"] == "paid"

    await until(paid, f"the refund of job {job_id[:8]} paid")


# -- the cases ----------------------------------------------------------------------------


async def test_free_job(agent: AgentProcess, client: sdk.Client,
                        ai_server: AiTestServer) -> None:
    view = LedgerView(agent.db_path)
    customer = Customer(client, agent)
    pool = view.pool_available()
    marker = tag()
    request = await customer.ask(["i", f"why is the sky blue? {marker}", "text"], FREE)
    events = await customer.exactly(request, "processing", "6050", "success")
    result = next(e for e in events if e.kind().as_u16() == 6050)
    assert result.content() and ["i", f"why is the sky blue? {marker}", "text"] in tags_of(result)
    assert ["request", request.as_json()] in tags_of(result)
    job = await job_in(view, request.id().to_hex(), "done")
    estimate, actual = cost(DEFAULT_PRICING, usage_of(ai_server, agent.config.ai_scenario, marker))
    assert (job["serve"], job["estimate_msat"], job["absorbed_msat"]) == ("free", estimate, actual)
    assert ["amount", "0"] in tags_of(result) and not job["paid_msat"]
    assert view.pool_available() == pool - actual and view.balance(customer.pubkey) == 0
    agent.ledger_check()


async def test_nip44_encrypted_job_paid_by_bolt11(agent: AgentProcess, client: sdk.Client,
                                                  payer: LnbitsUser,
                                                  ai_server: AiTestServer) -> None:
    view = LedgerView(agent.db_path)
    customer = Customer(client, agent)
    pool = view.pool_available()
    marker = tag()
    request = await customer.send(customer.encrypted(
        "nip44", ["i", f"and why are sunsets red? {marker}", "text"]))
    quote = await customer.wait(request, 7000, "payment-required")
    assert ["encrypted"] in tags_of(quote) and "sat" in customer.decrypt("nip44", quote.content())
    amount = amount_of(quote)
    job = await job_in(view, request.id().to_hex(), "invoiced")
    assert int(amount[1]) == whole_sats_up(job["estimate_msat"] - ALLOWANCE_MSAT)
    assert view.pool_available() == pool, "a quote must not lock pool funds"
    await payer.pay(amount[2])
    events = await customer.exactly(request, "payment-required", "processing", "6050",
                                    "success")
    result = next(e for e in events if e.kind().as_u16() == 6050)
    assert ["encrypted"] in tags_of(result) and not [t for t in tags_of(result) if t[0] == "i"]
    assert customer.decrypt("nip44", result.content())
    assert marker not in request.as_json() and marker not in result.as_json()
    job = await job_in(view, request.id().to_hex(), "done")
    paid, kept, rest = partial_effect(view, job, usage_of(ai_server, agent.config.ai_scenario,
                                                          marker))
    assert paid == int(amount[1]) and amount_of(result) == ["amount", str(job["charged_msat"])]
    assert view.pool_available() == pool - kept and view.balance(customer.pubkey) == rest
    agent.ledger_check()


async def test_nip04_encrypted_job(agent: AgentProcess, client: sdk.Client,
                                   ai_server: AiTestServer) -> None:
    view = LedgerView(agent.db_path)
    customer = Customer(client, agent)
    pool = view.pool_available()
    marker = tag()
    request = await customer.send(customer.encrypted(
        "nip04", ["i", f"what is a photon? {marker}", "text"], FREE))
    events = await customer.exactly(request, "processing", "6050", "success")
    for event in events:
        assert ["encrypted"] in tags_of(event) and marker not in event.as_json()
    result = next(e for e in events if e.kind().as_u16() == 6050)
    assert "?iv=" in result.content() and customer.decrypt("nip04", result.content())
    job = await job_in(view, request.id().to_hex(), "done")
    _, actual = cost(DEFAULT_PRICING, usage_of(ai_server, agent.config.ai_scenario, marker))
    assert (job["serve"], job["absorbed_msat"]) == ("free", actual)
    assert view.pool_available() == pool - actual
    agent.ledger_check()


async def test_job_paid_by_a_zap_of_the_feedback(agent: AgentProcess, client: sdk.Client,
                                                 relay: str, provider: LnurlProvider,
                                                 payer: LnbitsUser,
                                                 ai_server: AiTestServer) -> None:
    view = LedgerView(agent.db_path)
    customer = Customer(client, agent)
    pool = view.pool_available()
    marker = tag()
    request = await customer.ask(["i", f"what is a zap? {marker}", "text"])
    quote = await customer.wait(request, 7000, "payment-required")
    amount = int(amount_of(quote)[1])
    async with httpx.AsyncClient(timeout=30.0) as http:
        lnurl = LnurlClient(http, insecure_hosts=frozenset({provider.host}))
        address = AgentAddress(provider.address, lnurl)
        zap_request = sdk.EventBuilder(sdk.Kind(9734), "").tags([
            sdk.Tag.parse(["relays", relay]), sdk.Tag.parse(["amount", str(amount)]),
            sdk.Tag.parse(["lnurl", address.lnurl]), sdk.Tag.public_key(customer.agent),
            sdk.Tag.event(quote.id())]).finalize(customer.keys)
        got = await lnurl.fetch_invoice(await address.pay_request(), amount,
                                        zap_request_json=zap_request.as_json())
    await payer.pay(got.bolt11)
    events = await customer.exactly(request, "payment-required", "processing", "6050",
                                    "success")
    result = next(e for e in events if e.kind().as_u16() == 6050)
    job = await job_in(view, request.id().to_hex(), "done")
    paid, kept, rest = partial_effect(view, job, usage_of(ai_server, agent.config.ai_scenario,
                                                          marker))
    assert paid == amount and amount_of(result) == ["amount", str(job["charged_msat"])]
    assert view.pool_available() == pool - kept and view.balance(customer.pubkey) == rest
    agent.ledger_check()


async def test_bid_too_low(agent: AgentProcess, client: sdk.Client) -> None:
    view = LedgerView(agent.db_path)
    customer = Customer(client, agent)
    pool = view.pool_available()
    request = await customer.ask(["i", f"a cheap question {tag()}", "text"], ["bid", "1000"])
    [error] = await customer.exactly(request, "error")
    info = next(t for t in tags_of(error) if t[0] == "status")[2]
    assert "bid" in info and "1 sat" in info, info
    assert view.job(request.id().to_hex()) is None and view.pool_available() == pool
    assert view.balance(customer.pubkey) == 0
    agent.ledger_check()


async def test_event_and_job_inputs(agent: AgentProcess, client: sdk.Client, relay: str,
                                    ai_server: AiTestServer) -> None:
    """An ``event`` input is that event's content; a ``job`` input (chaining) is the output
    of that earlier job, its result read from the relay."""
    view = LedgerView(agent.db_path)
    customer = Customer(client, agent)
    pool = view.pool_available()
    marker = tag()
    note = await customer.send(sdk.EventBuilder(sdk.Kind(1), f"what is a quark? {marker}")
                               .finalize(customer.keys))
    request = await customer.ask(["i", note.id().to_hex(), "event", relay], FREE)
    events = await customer.exactly(request, "processing", "6050", "success")
    result = next(e for e in events if e.kind().as_u16() == 6050)
    assert ["i", note.id().to_hex(), "event", relay] in tags_of(result)
    job = await job_in(view, request.id().to_hex(), "done")
    _, actual = cost(DEFAULT_PRICING, usage_of(ai_server, agent.config.ai_scenario, marker))
    assert (job["serve"], job["absorbed_msat"]) == ("free", actual)
    assert view.pool_available() == pool - actual

    then = tag()
    other = Customer(client, agent)  # a fresh allowance: this one is free too
    chained = await other.ask(["i", request.id().to_hex(), "job", relay],
                              ["i", f"now shorter {then}", "text"], FREE)
    await other.exactly(chained, "processing", "6050", "success")
    usage = usage_of(ai_server, agent.config.ai_scenario, then)
    [seen] = [r for r in ai_server.scenario_records(agent.config.ai_scenario)
              if r.path.endswith("/chat/completions") and then in str(r.body)]
    assert isinstance(seen.body, dict)
    assert seen.body["messages"][-1]["content"] == f"{result.content()}\n\nnow shorter {then}"
    job = await job_in(view, chained.id().to_hex(), "done")
    _, second = cost(DEFAULT_PRICING, usage)
    assert (job["serve"], job["absorbed_msat"]) == ("free", second)
    assert view.pool_available() == pool - actual - second
    agent.ledger_check()


async def test_cancellation_before_payment(agent: AgentProcess, client: sdk.Client) -> None:
    """A deletion by someone else is ignored; the author's (without ``k``) cancels: nothing
    moved."""
    view = LedgerView(agent.db_path)
    customer = Customer(client, agent)
    pool = view.pool_available()
    request = await customer.ask(["i", f"never mind {tag()}", "text"])
    await customer.wait(request, 7000, "payment-required")
    await customer.delete(request, by=sdk.Keys.generate())
    await asyncio.sleep(SETTLE_S)
    assert str((await job_in(view, request.id().to_hex(), "invoiced"))["state"]) == "invoiced"
    await customer.delete(request, k=False)  # NIP-09 makes k optional
    events = await customer.exactly(request, "payment-required", "error")
    error = next(e for e in events if status_of(e) == "error")
    assert "cancelled" in next(t for t in tags_of(error) if t[0] == "status")[2].lower()
    job = await job_in(view, request.id().to_hex(), "cancelled")
    assert not job["paid_msat"] and not job["absorbed_msat"] and not job["charged_msat"]
    nothing_moved(view, request.id().to_hex())
    assert view.pool_available() == pool and view.balance(customer.pubkey) == 0
    assert view.query("SELECT * FROM daily_usage WHERE pubkey = ?", (customer.pubkey,)) == []
    agent.ledger_check()


async def test_backend_failure_after_payment_is_refunded(
        agent: AgentProcess, client: sdk.Client, relay: str, payer: LnbitsUser,
        lnbits_user: Callable[..., LnbitsUser]) -> None:
    view = LedgerView(agent.db_path)
    customer = Customer(client, agent)
    pool = view.pool_available()
    request = await customer.ask(["i", f"this fails after payment [[fail]] {tag()}", "text"])
    quote = await customer.wait(request, 7000, "payment-required")
    await payer.pay(amount_of(quote)[2])
    events = await customer.exactly(request, "payment-required", "processing", "error")
    error = next(e for e in events if status_of(e) == "error")
    assert "refund" in next(t for t in tags_of(error) if t[0] == "status")[2].lower()
    job = await job_in(view, request.id().to_hex(), "failed")
    paid = int(amount_of(quote)[1])
    assert job["paid_msat"] == paid and job["refund_msat"] == paid
    assert job["refund_state"] == "pending" and not job["charged_msat"]
    assert not job["absorbed_msat"] and view.pool_available() == pool
    agent.ledger_check()

    # the customer has no lud16: the refund is claimed by DM, with an invoice
    wallet = lnbits_user("nip90-refund", 0)
    bolt11, payment_hash = await wallet.invoice(paid // 1000, "refund of a failed job")
    async with Hub([relay]) as hub:
        asker = hub.asker(agent.pubkey_hex, customer.keys)
        await hub.watch([asker])
        await asker.ask(f"refund {bolt11}", "nip04")
    await job_refund_paid(view, request.id().to_hex())
    assert await wallet.is_paid(payment_hash) and await wallet.balance_msat() == paid
    agent.ledger_check()


async def test_malformed_requests_get_one_error_and_others_are_served(
        agent: AgentProcess, client: sdk.Client, ai_server: AiTestServer) -> None:
    view = LedgerView(agent.db_path)
    before = len(view.jobs())
    bad = {
        "no i": [["param", "max_tokens", "10"]],
        "bad i type": [["i", "hello", "video"]],
        "bad event id": [["i", "not-an-event-id", "event"]],
        "unknown event": [["i", "ab" * 32, "event"]],
        "bid": [["i", "hello", "text"], ["bid", "ten sats"]],
        "huge param": [["i", "hello", "text"], ["param", "temperature", "9" * 300]],
        "many params": [["i", "hello", "text"]] + [["param", f"p{n}", "1"] for n in range(17)],
        "bad max_tokens": [["i", "hello", "text"], ["param", "max_tokens", "-5"]],
    }
    customers = {name: Customer(client, agent) for name in bad}
    sent = {name: await customers[name].ask(*tags) for name, tags in bad.items()}
    served = Customer(client, agent)
    marker = tag()
    huge = await served.ask(["i", "long " * 1000, "text"])  # dropped by the flood guard
    good = await served.ask(["i", f"still there? {marker}", "text"], FREE)
    await served.exactly(good, "processing", "6050", "success")
    for name, request in sent.items():
        await customers[name].wait(request, 7000, "error")
    await asyncio.sleep(SETTLE_S)
    for name, request in sent.items():
        got = [status_of(e) for e in await customers[name].about(request)]
        assert got == ["error"], f"{name}: {got}"
    assert await served.about(huge) == [], "an oversized request is dropped without a reply"
    job = await job_in(view, good.id().to_hex(), "done")
    _, actual = cost(DEFAULT_PRICING, usage_of(ai_server, agent.config.ai_scenario, marker))
    assert (job["serve"], job["absorbed_msat"]) == ("free", actual)
    assert len(view.jobs()) == before + 1, "a malformed request made a job"
    agent.ledger_check()
