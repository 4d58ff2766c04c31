"""NIP-90 jobs through the running agent (in one process, a real relay, the AI test server, the
dev wallet): the same money rules as DMs, with the ledger checked after each case."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

import bot.agent.agent as agent_module
from bot.agent.settings import ProfileConfig
from bot.nostr import nip57, nip90
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.config import RelayConfig
from bot.wallets.bolt11 import decode_invoice
from bot.wallets.lightning_address import AgentAddress
from bot.wallets.lnurl import LnurlClient
from storage import NotFound, UnknownJob, check
from tests.agent.test_agent import Running, start_agent
from tests.fixtures.ai_server import AiTestServer, Behaviour
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer
from tests.fixtures.lnurl_provider import LnurlProvider
from tests.fixtures.nwc_service import LnbitsRest
from tests.fixtures.relay import RelayFactory


class Customer:
    """A NIP-90 customer: publishes kind-5050 requests and deletions, collects the agent's
    feedback and results (each event once, decrypted when encrypted)."""

    def __init__(self, pool: RelayPool, keys: Keys, agent: Keys) -> None:
        self.pool, self.keys, self.agent = pool, keys, agent
        self.events: list[Event] = []
        self.ids: set[str] = set()
        self.scheme: nip90.Encryption = ""

    async def start(self) -> None:
        await self.pool.subscribe([{"kinds": [nip90.KIND_FEEDBACK, nip90.KIND_TEXT_RESULT],
                                    "#p": [self.keys.public_hex]}], self._on_event,
                                  lookback_s=60)
        await self.pool.wait_connected(5)

    async def _on_event(self, event: Event, relay_url: str) -> None:
        if event.id not in self.ids:
            self.ids.add(event.id)
            self.events.append(event)

    async def request(self, text: str, *tags: list[str], scheme: nip90.Encryption = "",
                      to: list[str] | None = None, targeted: bool = True) -> Event:
        params = [["i", text, "text"], *tags]
        targets = [["p", self.agent.public_hex]] if targeted else []
        if scheme:
            content = nip90.encrypt(self.keys, scheme, self.agent.public_hex, json.dumps(params))
            event = sign_event(self.keys, 5050, content, [*targets, ["encrypted"]])
        else:
            event = sign_event(self.keys, 5050, "", [*params, *targets])
        for url in to or [None]:  # type: ignore[list-item]
            result = await (self.pool.publish(event) if url is None
                            else self.pool.publish_to(event, [url]))
            assert result.ok
        return event

    async def delete(self, request: Event, keys: Keys | None = None, *, k: bool = True
                     ) -> Event:
        """A kind-5 deletion of ``request`` (with the ``k`` tag NIP-09 recommends, or not)."""
        tags = [["e", request.id]] + ([["k", "5050"]] if k else [])
        deletion = sign_event(keys or self.keys, 5, "", tags)
        assert (await self.pool.publish(deletion)).ok
        return deletion

    def about(self, request: Event, kind: int | None = None, status: str | None = None
              ) -> list[Event]:
        return [e for e in self.events if request.id in e.tag_values("e")
                and (kind is None or e.kind == kind)
                and (status is None or e.first_tag("status") == status)]

    async def wait_for(self, request: Event, kind: int, status: str | None = None,
                       timeout_s: float = 15.0) -> Event:
        async with asyncio.timeout(timeout_s):
            while not self.about(request, kind, status):
                await asyncio.sleep(0.02)
        return self.about(request, kind, status)[0]

    def info(self, feedback: Event) -> str:
        """A feedback's human text (decrypted for an encrypted request)."""
        if feedback.content:
            return nip90.decrypt(self.keys, nip90.scheme_of(feedback.content),
                                 self.agent.public_hex, feedback.content)
        status = next(t for t in feedback.tags if t[0] == "status")
        return status[2] if len(status) > 2 else ""


@contextlib.asynccontextmanager
async def customer_of(running: Running, urls: list[str] | None = None
                      ) -> AsyncIterator[Customer]:
    keys = Keys.generate()
    async with RelayPool([RelayConfig(u) for u in urls or [running.relay_url]],
                         keys=keys) as pool:
        c = Customer(pool, keys, running.agent.parts.keys)
        await c.start()
        yield c


@pytest.fixture
async def running(tmp_path: Path, relay_url: str, ai_server: AiTestServer
                  ) -> AsyncIterator[Running]:
    async with start_agent(tmp_path, relay_url, ai_server) as agent:
        yield agent


@pytest.fixture
async def customer(running: Running) -> AsyncIterator[Customer]:
    async with customer_of(running) as c:
        yield c


async def _books_ok(running: Running) -> None:
    report = await check(running.db)
    assert report.ok, report.violations


async def _fund(running: Running) -> None:
    await running.agent.ledger.credit_pool(1_000_000, f"fund-{id(running)}", source="operator")


async def test_free_job(running: Running, customer: Customer) -> None:
    await _fund(running)
    request = await customer.request("why is the sky blue?")
    out = await customer.wait_for(request, nip90.KIND_TEXT_RESULT)
    await customer.wait_for(request, nip90.KIND_FEEDBACK, "success")
    assert customer.about(request, nip90.KIND_FEEDBACK, "processing")
    tags = [list(t) for t in out.tags]
    assert ["i", "why is the sky blue?", "text"] in tags and ["amount", "0"] in tags
    assert Event.from_json(out.first_tag("request") or "") == request
    assert ["p", customer.keys.public_hex] in tags and out.content
    (job,) = await running.agent.ledger.recent_jobs(customer.keys.public_hex)
    assert (str(job.serve), str(job.state)) == ("free", "done")
    await _books_ok(running)


async def test_quoted_job_paid_by_its_bolt11(running: Running, customer: Customer) -> None:
    request = await customer.request("a paid question")
    quote = await customer.wait_for(request, nip90.KIND_FEEDBACK, "payment-required")
    amount = next(t for t in quote.tags if t[0] == "amount")
    invoice = decode_invoice(amount[2])
    assert int(amount[1]) == invoice.amount_msat and invoice.amount_msat % 1000 == 0
    assert not customer.about(request, nip90.KIND_FEEDBACK, "processing")  # waits for payment
    running.wallet.settle(invoice.payment_hash)
    out = await customer.wait_for(request, nip90.KIND_TEXT_RESULT)
    await customer.wait_for(request, nip90.KIND_FEEDBACK, "success")
    job = await running.agent.ledger.job(request.id)
    assert (str(job.serve), str(job.state)) == ("gate", "done")
    assert job.paid_msat == invoice.amount_msat
    assert out.first_tag("amount") == str(job.charged_msat)
    balance = await running.agent.ledger.balance(customer.keys.public_hex)
    assert job.refund_msat % 1000 == 0  # a whole-sat refund, the sub-sat rest as balance
    assert job.refund_msat + balance.available_msat == (job.paid_msat or 0) - (job.charged_msat
                                                                             or 0)
    await _books_ok(running)


async def test_bid_too_low_is_one_error_and_nothing_moves(running: Running,
                                                          customer: Customer) -> None:
    before = await check(running.db)
    request = await customer.request("a question", ["bid", "1000"])
    error = await customer.wait_for(request, nip90.KIND_FEEDBACK, "error")
    assert "above your bid of 1 sat" in customer.info(error)
    await asyncio.sleep(0.3)
    assert len(customer.about(request)) == 1
    assert await running.agent.ledger.recent_jobs(customer.keys.public_hex) == []
    after = await check(running.db)
    assert before.balances == after.balances and before.transfers == after.transfers
    # a bid that covers the price is quoted as usual
    ok = await customer.request("a question", ["bid", "10000000"])
    await customer.wait_for(ok, nip90.KIND_FEEDBACK, "payment-required")


@pytest.mark.parametrize("scheme", ["nip04", "nip44"])
async def test_encrypted_job(running: Running, customer: Customer,
                             scheme: nip90.Encryption) -> None:
    await _fund(running)
    request = await customer.request("a secret question", scheme=scheme)
    out = await customer.wait_for(request, nip90.KIND_TEXT_RESULT)
    assert ["encrypted"] in [list(t) for t in out.tags]
    assert out.tag_values("i") == [] and "secret" not in out.to_json().replace(
        request.to_json().replace('"', '\\"'), "")
    answer = nip90.decrypt(customer.keys, scheme, running.agent.parts.keys.public_hex,
                           out.content)
    assert answer
    success = await customer.wait_for(request, nip90.KIND_FEEDBACK, "success")
    assert "free" in customer.info(success)
    await _books_ok(running)


async def test_malformed_request_gets_one_error(running: Running, customer: Customer) -> None:
    bad = sign_event(customer.keys, 5050, "", [["i", "x", "video"],
                                                ["p", running.agent.parts.keys.public_hex]])
    assert (await customer.pool.publish(bad)).ok
    error = await customer.wait_for(bad, nip90.KIND_FEEDBACK, "error")
    assert "input type" in customer.info(error)
    await _fund(running)
    good = await customer.request("and a good one")  # the agent goes on serving
    await customer.wait_for(good, nip90.KIND_TEXT_RESULT)


async def test_cancel_before_payment(running: Running, customer: Customer) -> None:
    request = await customer.request("a question I regret")
    quote = await customer.wait_for(request, nip90.KIND_FEEDBACK, "payment-required")
    before = await check(running.db)
    await customer.delete(request)
    error = await customer.wait_for(request, nip90.KIND_FEEDBACK, "error")
    assert "Cancelled" in customer.info(error)
    job = await running.agent.ledger.job(request.id)
    assert str(job.state) == "cancelled" and not job.paid_msat
    after = await check(running.db)
    assert before.balances == after.balances and before.transfers == after.transfers
    assert quote.id != error.id
    await _books_ok(running)


async def test_a_deletion_without_k_cancels_too(running: Running, customer: Customer) -> None:
    # first a request that is answered at once, so the agent's subscription is surely live (a
    # relay may miss an event stored while it is still answering the subscription's query)
    ready = sign_event(customer.keys, 5050, "", [["p", running.agent.parts.keys.public_hex]])
    assert (await customer.pool.publish(ready)).ok
    await customer.wait_for(ready, nip90.KIND_FEEDBACK, "error")
    request = await customer.request("a question I regret at once")
    await customer.delete(request, k=False)  # maybe before the agent watches it: still seen
    error = await customer.wait_for(request, nip90.KIND_FEEDBACK, "error")
    assert "Cancelled" in customer.info(error)
    assert not customer.about(request, nip90.KIND_TEXT_RESULT)
    with contextlib.suppress(UnknownJob):
        assert str((await running.agent.ledger.job(request.id)).state) == "cancelled"
    await _books_ok(running)


async def test_deletions_of_requests_not_ours_are_never_recorded(
        running: Running, customer: Customer) -> None:
    """Only deletions naming our own unfinished requests come in: anyone's deletion of
    another provider's job (``k`` 5050 or not) is not even received."""
    elsewhere = sign_event(customer.keys, 5050, "", [["i", "hi", "text"],
                                                     ["p", Keys.generate().public_hex]])
    assert (await customer.pool.publish(elsewhere)).ok
    deletion = await customer.delete(elsewhere)
    mine = await customer.request("a question I regret later")
    await customer.wait_for(mine, nip90.KIND_FEEDBACK, "payment-required")
    await customer.delete(mine, k=False)
    await customer.wait_for(mine, nip90.KIND_FEEDBACK, "error")
    assert not await running.agent.intake.seen(deletion.id)
    assert not await running.agent.intake.seen(elsewhere.id)


async def test_cancel_after_payment_before_work_refunds_all(
        tmp_path: Path, relay_url: str, ai_server: AiTestServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "RECONCILE_S", 3600.0)  # nothing resumes the job but us
    async with start_agent(tmp_path, relay_url, ai_server) as running, \
            customer_of(running) as customer:
        request = await customer.request("paid, then cancelled")
        quote = await customer.wait_for(request, nip90.KIND_FEEDBACK, "payment-required")
        invoice = decode_invoice(next(t for t in quote.tags if t[0] == "amount")[2])
        amount = invoice.amount_msat or 0
        # paid as the ledger records a payment, without the wallet's push that starts the work
        await running.agent.ledger.confirm_payment(invoice.payment_hash, amount, "test-pay")
        assert str((await running.agent.ledger.job(request.id)).state) == "paid"
        await customer.delete(request)
        error = await customer.wait_for(request, nip90.KIND_FEEDBACK, "error")
        assert "cancelled" in customer.info(error) and "Refund" in customer.info(error)
        job = await running.agent.ledger.job(request.id)
        assert str(job.state) == "failed" and job.refund_msat == amount
        assert not customer.about(request, nip90.KIND_TEXT_RESULT)
        await _books_ok(running)


async def test_cancel_after_work_started_completes(running: Running,
                                                   customer: Customer) -> None:
    await _fund(running)
    request = await customer.request("a slow one [[slow:1]]")
    await customer.wait_for(request, nip90.KIND_FEEDBACK, "processing")
    await customer.delete(request)
    await customer.wait_for(request, nip90.KIND_TEXT_RESULT)
    assert not customer.about(request, nip90.KIND_FEEDBACK, "error")
    assert str((await running.agent.ledger.job(request.id)).state) == "done"
    await _books_ok(running)


async def test_deletion_by_someone_else_is_ignored(running: Running,
                                                   customer: Customer) -> None:
    request = await customer.request("mine")
    quote = await customer.wait_for(request, nip90.KIND_FEEDBACK, "payment-required")
    await customer.delete(request, keys=Keys.generate())
    await asyncio.sleep(0.5)
    assert str((await running.agent.ledger.job(request.id)).state) == "invoiced"
    running.wallet.settle(decode_invoice(
        next(t for t in quote.tags if t[0] == "amount")[2]).payment_hash)
    await customer.wait_for(request, nip90.KIND_TEXT_RESULT)
    assert not customer.about(request, nip90.KIND_FEEDBACK, "error")


async def test_duplicates_across_two_relays_answered_once(
        tmp_path: Path, relay_factory: RelayFactory, ai_server: AiTestServer) -> None:
    first, second = relay_factory(), relay_factory()
    async with start_agent(tmp_path, first.url, ai_server, more_relays=[second.url]) as running, \
            customer_of(running, [first.url, second.url]) as customer:
        await _fund(running)
        request = await customer.request("asked on two relays", to=[first.url, second.url])
        await customer.wait_for(request, nip90.KIND_FEEDBACK, "success")
        await asyncio.sleep(0.5)
        kinds = sorted((e.kind, e.first_tag("status") or "") for e in customer.about(request))
        assert kinds == [(6050, ""), (7000, "processing"), (7000, "success")]
        assert len(await running.agent.ledger.recent_jobs(customer.keys.public_hex)) == 1
        await _books_ok(running)


async def test_handler_announcement_is_published(running: Running) -> None:
    me = running.agent.parts.keys.public_hex
    async with RelayPool([RelayConfig(running.relay_url)], keys=Keys.generate()) as pool:
        events: list[Event] = []
        for _ in range(50):
            events = await pool.fetch([{"kinds": [31990], "authors": [me]}])
            if events:
                break
            await asyncio.sleep(0.1)
        (announcement,) = events
        assert announcement.tag_values("k") == ["5050"]
        meta = json.loads(announcement.content)
        assert meta["name"] == "Timmy" and meta["free_allowance"]["daily_jobs"] == 5
        assert meta["pricing"]["fixed_fee"] == 1000

        async def allowance() -> dict[str, object]:
            """The newest announcement's allowance, as a client reads a replaceable event (this
            relay may answer with the one it is replacing too, for a moment: it acknowledges an
            event before its store has dropped the older one)."""
            found = await pool.fetch([{"kinds": [31990], "authors": [me]}])
            newest = max(found, key=lambda ev: ev.created_at)
            assert {ev.tag_values("d")[0] for ev in found} == {newest.tag_values("d")[0]}
            return dict(json.loads(newest.content)["free_allowance"])

        # an admin's change is announced at once, not at the next 6-hourly refresh
        await running.agent.controls.set_limit("daily_free_jobs", 2)
        for _ in range(50):
            if (await allowance())["daily_jobs"] == 2:
                break
            await asyncio.sleep(0.1)
        assert (await allowance())["daily_jobs"] == 2
        await running.agent.controls.set_paused(True)
        for _ in range(50):
            if (await allowance()).get("paused"):
                break
            await asyncio.sleep(0.1)
        assert await allowance() == {"daily_msat": 0, "daily_jobs": 0, "paused": True}


async def test_a_zap_of_the_payment_required_feedback_pays_the_job(
        tmp_path: Path, relay_url: str, ai_server: AiTestServer,
        lnurl_provider_factory: Callable[..., LnurlProvider], lnbits_server: LnbitsServer,
        lnbits_new_wallet: Callable[..., LnbitsAccount]) -> None:
    provider = lnurl_provider_factory("timmy")
    profile = ProfileConfig(lud16=provider.address)
    async with (start_agent(tmp_path, relay_url, ai_server, profile,
                            frozenset({provider.host})) as running,
                customer_of(running) as customer,
                httpx.AsyncClient(timeout=30.0) as http,
                httpx.AsyncClient(base_url=lnbits_server.url, timeout=30.0) as lnbits_http):
        request = await customer.request("a job paid by a zap")
        quote = await customer.wait_for(request, nip90.KIND_FEEDBACK, "payment-required")
        amount = int(next(t for t in quote.tags if t[0] == "amount")[1])
        lnurl = LnurlClient(http, insecure_hosts=frozenset({provider.host}))
        address = AgentAddress(provider.address, lnurl)
        zap_request = nip57.build_zap_request(
            Keys.generate(), recipient_pubkey=running.agent.parts.keys.public_hex,
            amount_msat=amount, relays=[relay_url], lnurl=address.lnurl, event_id=quote.id)
        got = await lnurl.fetch_invoice(await address.pay_request(), amount,
                                        zap_request_json=zap_request.to_json())
        payer = LnbitsRest(lnbits_http, lnbits_new_wallet("zapper", 10_000))
        status, _ = await payer.pay(got.bolt11)
        assert status in (200, 201)
        out = await customer.wait_for(request, nip90.KIND_TEXT_RESULT, timeout_s=30)
        job = await running.agent.ledger.job(request.id)
        assert str(job.state) == "done" and job.paid_msat == amount
        assert out.first_tag("amount") == str(job.charged_msat)
        await _books_ok(running)


async def test_temperature_and_an_offered_model_reach_the_backend(
        tmp_path: Path, relay_url: str, ai_server: AiTestServer) -> None:
    async with start_agent(tmp_path, relay_url, ai_server, ai={"models": ("bigger",)}
                           ) as running, customer_of(running) as customer:
        await _fund(running)
        request = await customer.request("warm me up", ["param", "temperature", "1.5"],
                                         ["param", "model", "bigger"])
        await customer.wait_for(request, nip90.KIND_TEXT_RESULT)
        [seen] = running.scenario.chat_requests()
        assert (seen.body["model"], seen.body["temperature"]) == ("bigger", 1.5)
        refused = await customer.request("on a model nobody offers", ["param", "model", "gpt-9"])
        error = await customer.wait_for(refused, nip90.KIND_FEEDBACK, "error")
        assert "'gpt-9' is not offered" in customer.info(error)
        assert "test, bigger" in customer.info(error)
        with pytest.raises(UnknownJob):  # refused before any decision: nothing recorded
            await running.agent.ledger.job(refused.id)
        assert len(running.scenario.chat_requests()) == 1
        me = running.agent.parts.keys.public_hex
        for _ in range(50):
            found = await customer.pool.fetch([{"kinds": [31990], "authors": [me]}])
            if found:
                break
            await asyncio.sleep(0.1)
        params = json.loads(found[0].content)["nip90Params"]
        assert params["model"]["values"] == ["test", "bigger"]
        await _books_ok(running)


async def test_untargeted_requests_are_ignored_unless_configured(
        running: Running, customer: Customer) -> None:
    await _fund(running)
    request = await customer.request("anyone there?", targeted=False)
    await asyncio.sleep(1.0)
    assert customer.about(request) == []
    assert await running.agent.ledger.recent_jobs(customer.keys.public_hex) == []


async def test_untargeted_requests_are_served_paid_only(
        tmp_path: Path, relay_url: str, ai_server: AiTestServer) -> None:
    async with start_agent(tmp_path, relay_url, ai_server,
                           service={"nip90_untargeted": True}) as running, \
            customer_of(running) as customer:
        await _fund(running)
        pool = (await running.agent.ledger.pool_status()).available_msat
        untargeted = await customer.request("for any provider", targeted=False)
        quote = await customer.wait_for(untargeted, nip90.KIND_FEEDBACK, "payment-required")
        assert "tags no provider" in customer.info(quote)
        job = await running.agent.ledger.job(untargeted.id)
        assert (str(job.serve), job.absorb_msat) == ("gate", 0)
        assert (await running.agent.ledger.pool_status()).available_msat == pool
        targeted = await customer.request("for you")  # the same customer, tagging the agent
        await customer.wait_for(targeted, nip90.KIND_TEXT_RESULT)
        assert str((await running.agent.ledger.job(targeted.id)).serve) == "free"
        await _books_ok(running)


async def test_event_input_is_fetched_and_an_unknown_one_refused(
        running: Running, customer: Customer) -> None:
    await _fund(running)
    note = sign_event(customer.keys, 1, "what is the speed of light?", [])
    assert (await customer.pool.publish(note)).ok
    request = sign_event(customer.keys, 5050, "", [["i", note.id, "event", running.relay_url],
                                                   ["p", running.agent.parts.keys.public_hex]])
    assert (await customer.pool.publish(request)).ok
    out = await customer.wait_for(request, nip90.KIND_TEXT_RESULT)
    assert ["i", note.id, "event", running.relay_url] in [list(t) for t in out.tags]
    unknown = sign_event(customer.keys, 5050, "", [["i", "ab" * 32, "event"],
                                                   ["p", running.agent.parts.keys.public_hex]])
    assert (await customer.pool.publish(unknown)).ok
    error = await customer.wait_for(unknown, nip90.KIND_FEEDBACK, "error")
    assert "was not found" in customer.info(error)
    with pytest.raises(UnknownJob):  # refused before any decision: nothing recorded
        await running.agent.ledger.job(unknown.id)
    await _books_ok(running)


async def test_backend_failure_after_payment_is_one_error_and_a_full_refund(
        running: Running, customer: Customer) -> None:
    running.scenario.script(Behaviour(kind="status", status=400, message="bad"))
    request = await customer.request("a job whose work fails")
    quote = await customer.wait_for(request, nip90.KIND_FEEDBACK, "payment-required")
    running.wallet.settle(decode_invoice(
        next(t for t in quote.tags if t[0] == "amount")[2]).payment_hash)
    error = await customer.wait_for(request, nip90.KIND_FEEDBACK, "error")
    assert "could not answer" in customer.info(error) and "Refund" in customer.info(error)
    job = await running.agent.ledger.job(request.id)
    assert str(job.state) == "failed" and job.refund_msat == job.paid_msat
    assert not customer.about(request, nip90.KIND_TEXT_RESULT)
    await _books_ok(running)


async def test_requests_dated_too_old_or_too_far_ahead_are_ignored_once_and_for_all(
        running: Running, customer: Customer) -> None:
    """Dropped without a reply, and claimed: delivered again (another relay, the look-back
    after a restart) they are not even looked at — NostrDVM re-runs future-dated requests at
    every start."""
    await _fund(running)
    now = int(time.time())
    me = running.agent.parts.keys.public_hex
    tags = [["i", "when?", "text"], ["p", me]]
    old = sign_event(customer.keys, 5050, "", tags, created_at=now - 2 * 3600)
    ahead = sign_event(customer.keys, 5050, "", tags, created_at=now + 2 * 3600)
    skewed = sign_event(customer.keys, 5050, "", tags, created_at=now + 60)
    jobs = running.agent.jobs
    for event in (old, ahead, old, ahead):
        await jobs.handle(event, running.relay_url)
    assert jobs.ignored == 2  # once each: the second delivery is a claimed id
    for event in (old, ahead):
        assert await running.agent.intake.seen(event.id)
        with pytest.raises(NotFound):
            await running.agent.intake.request(event.id)
    assert (await customer.pool.publish(skewed)).ok  # a little ahead (clock skew): served
    await customer.wait_for(skewed, nip90.KIND_TEXT_RESULT)


async def test_replies_also_go_to_the_request_relays_and_a_dead_one_delays_nobody(
        tmp_path: Path, relay_factory: RelayFactory, ai_server: AiTestServer) -> None:
    mine, theirs = relay_factory(), relay_factory()
    dead = "ws://127.0.0.1:9/"  # nothing listens there
    async with start_agent(tmp_path, mine.url, ai_server) as running, \
            customer_of(running) as customer:
        await _fund(running)
        request = await customer.request("where do you answer?", ["relays", dead, theirs.url])
        await customer.wait_for(request, nip90.KIND_FEEDBACK, "success")
        async with RelayPool([RelayConfig(theirs.url)], keys=Keys.generate()) as pool:
            found: list[Event] = []
            for _ in range(50):
                found = await pool.fetch([{"#e": [request.id],
                                           "authors": [running.agent.parts.keys.public_hex]}])
                if len(found) == 3:
                    break
                await asyncio.sleep(0.1)
        assert sorted((e.kind, e.first_tag("status") or "") for e in found) == [
            (6050, ""), (7000, "processing"), (7000, "success")]
        other = await customer.request("and the next one?")  # served while dead never answers
        await customer.wait_for(other, nip90.KIND_TEXT_RESULT)


async def test_the_announcement_survives_a_clean_stop(
        tmp_path: Path, relay_url: str, ai_server: AiTestServer) -> None:
    async with start_agent(tmp_path, relay_url, ai_server) as running:
        me = running.agent.parts.keys.public_hex
        async with RelayPool([RelayConfig(relay_url)], keys=Keys.generate()) as pool:
            for _ in range(50):
                if await pool.fetch([{"kinds": [31990], "authors": [me]}]):
                    break
                await asyncio.sleep(0.1)
    async with RelayPool([RelayConfig(relay_url)], keys=Keys.generate()) as pool:
        assert await pool.fetch([{"kinds": [31990], "authors": [me]}])
        assert await pool.fetch([{"kinds": [5], "authors": [me]}]) == []
