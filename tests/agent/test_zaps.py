"""Zaps into the pool: real zaps through an LNURL/NIP-57 provider (backed by LNbits) whose receipts
reach two real relays, plus forged receipts of every class. The pool is credited exactly for the
real ones, exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bot.agent.metrics import Metrics
from bot.agent.zaps import (
    NOTE_CHARS,
    VerifyUrlCheck,
    WalletLookupCheck,
    ZapIntake,
    ZapOutcome,
    ZapResult,
    zap_key,
    zap_note,
)
from bot.nostr import nip57
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from bot.relays.config import RelayConfig
from bot.relays.pool import RelayPool
from bot.wallets.bolt11 import encode_invoice
from bot.wallets.lightning_address import AgentAddress
from bot.wallets.lnbits import LnbitsWallet
from bot.wallets.lnurl import LnurlClient
from storage import Database, Intake, Ledger, Limits, PaymentVerdict, check
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer
from tests.fixtures.lnurl_provider import LnurlProvider, publish_sync
from tests.fixtures.nwc_service import LnbitsRest
from tests.fixtures.relay import RelayFactory


@dataclass
class ZapEnv:
    agent: Keys
    provider: LnurlProvider
    relays: list[str]
    lnurl: LnurlClient
    address: AgentAddress
    ledger: Ledger
    intake: ZapIntake
    payer: LnbitsRest

    async def zap(
        self, amount_msat: int, *, zapper: Keys | None = None, event_id: str | None = None
    ) -> tuple[Event, str]:
        """A real zap: request → provider invoice → paid from another LNbits wallet."""
        request = self.zap_request(amount_msat, zapper=zapper, event_id=event_id)
        bolt11, payment_hash = await self.invoice_for(request, amount_msat)
        status, _ = await self.payer.pay(bolt11)
        assert status in (200, 201)
        return request, payment_hash

    def zap_request(
        self, amount_msat: int, *, zapper: Keys | None = None, event_id: str | None = None,
        recipient: str | None = None,
    ) -> Event:
        return nip57.build_zap_request(
            zapper or Keys.generate(),
            recipient_pubkey=recipient or self.agent.public_hex,
            amount_msat=amount_msat,
            relays=self.relays,
            lnurl=self.address.lnurl,
            event_id=event_id,
        )

    async def invoice_for(self, request: Event, amount_msat: int) -> tuple[str, str]:
        pay = await self.address.pay_request()
        got = await self.lnurl.fetch_invoice(pay, amount_msat, zap_request_json=request.to_json())
        return got.bolt11, got.invoice.payment_hash

    async def results_for(self, receipt_ids: set[str], timeout: float = 30.0) -> list[ZapResult]:
        async def wait() -> list[ZapResult]:
            while True:
                found = [r for r in self.intake.results if r.receipt_id in receipt_ids]
                if {r.receipt_id for r in found} >= receipt_ids:
                    return found
                await asyncio.sleep(0.1)

        return await asyncio.wait_for(wait(), timeout)


async def wait_for(check_fn: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    async def loop() -> None:
        while not await check_fn():
            await asyncio.sleep(0.1)

    await asyncio.wait_for(loop(), timeout)


@pytest.fixture
async def zap_env(
    tmp_path: Path,
    relay_url: str,
    relay_factory: RelayFactory,
    lnurl_provider_factory: Callable[..., LnurlProvider],
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> AsyncIterator[ZapEnv]:
    relays = [relay_url, relay_factory().url]  # two relays: the shared one and a fresh one
    provider = lnurl_provider_factory("timmy")
    agent = Keys.generate()
    db = await Database.open(tmp_path / "ledger.sqlite3")
    ledger = Ledger(db, Limits(daily_free_msat=10_000, daily_free_jobs=5))
    pool = RelayPool([RelayConfig(url) for url in relays])
    async with (
        httpx.AsyncClient(timeout=30.0) as http,
        httpx.AsyncClient(base_url=lnbits_server.url, timeout=30.0) as lnbits_http,
    ):
        lnurl = LnurlClient(http, insecure_hosts=frozenset({provider.host}))
        address = AgentAddress(provider.address, lnurl)
        intake = ZapIntake(
            agent_pubkey=agent.public_hex,
            address=address,
            ledger=ledger,
            intake=Intake(db),
            payment_check=VerifyUrlCheck(
                lnurl, provider.base_url + "/lnurlp/verify/{payment_hash}"
            ),
        )
        await pool.start()
        assert await pool.wait_connected(10.0, all_relays=True)
        await intake.start(pool)
        payer = LnbitsRest(lnbits_http, lnbits_new_wallet("zapper", 100_000))
        try:
            yield ZapEnv(agent, provider, relays, lnurl, address, ledger, intake, payer)
        finally:
            await intake.stop()
            await pool.stop()
            await db.close()


def forged_receipt(
    signer: Keys,
    request: Event,
    bolt11: str,
    *,
    description: str | None = None,
    created_at: int | None = None,
    preimage: str | None = None,
) -> Event:
    return nip57.build_zap_receipt(
        signer,
        zap_request=request,
        description=description if description is not None else request.to_json(),
        bolt11_invoice=bolt11,
        paid_at=created_at if created_at is not None else int(time.time()),
        preimage=preimage,
    )


def fake_invoice(amount_msat: int, description: str) -> str:
    """A well-formed bolt11 nobody can pay, committing to ``description``."""
    return encode_invoice(
        network="bc",
        amount_msat=amount_msat,
        payment_hash=hashlib.sha256(os.urandom(32)).hexdigest(),
        payment_secret=os.urandom(32).hex(),
        created_at=int(time.time()),
        expiry_s=600,
        node_key_hex=os.urandom(32).hex(),
        description_hash=hashlib.sha256(description.encode()).hexdigest(),
    )


async def test_pool_credited_exactly_for_real_zaps_once_across_two_relays(
    zap_env: ZapEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.agent.zaps")
    env = zap_env
    zapper = Keys.generate()
    _, hash_a = await env.zap(21_000, zapper=zapper)
    await env.zap(5_000)

    async def both_credited() -> bool:
        return (await env.ledger.pool_status()).total_in_msat == 26_000

    await wait_for(both_credited)
    await env.intake.drain()
    receipts = list(env.provider.receipts)
    assert len(receipts) == 2
    real = await env.results_for({r.id for r in receipts})
    assert {r.outcome for r in real} == {ZapOutcome.POOL}
    assert all(r.first_time for r in real)
    by_hash = {r.zap.payment_hash: r.zap for r in real if r.zap is not None}
    assert by_hash[hash_a].zapper_pubkey == zapper.public_hex
    assert by_hash[hash_a].amount_msat == 21_000
    status = await env.ledger.pool_status()
    assert status.zap_count == 2 and status.zapper_count == 2

    # --- forged receipts of every class, published to both relays -----------------------------
    paid_request = next(r for r in receipts if r.first_tag("bolt11"))
    real_desc = paid_request.first_tag("description")
    assert real_desc is not None
    real_request = Event.from_json(real_desc)
    real_bolt11 = paid_request.first_tag("bolt11")
    assert real_bolt11 is not None
    provider_keys = env.provider.keys
    forged: dict[str, str] = {}

    wrong_signer = forged_receipt(Keys.generate(), real_request, real_bolt11, description=real_desc)
    forged[wrong_signer.id] = "wrong_signer"

    cheap_request = env.zap_request(1_000)
    wrong_amount = forged_receipt(
        provider_keys, cheap_request, fake_invoice(2_100_000, cheap_request.to_json())
    )
    forged[wrong_amount.id] = "amount_mismatch"

    other_request = env.zap_request(21_000)
    hash_mismatch = forged_receipt(
        provider_keys, other_request, real_bolt11  # the bolt11 commits to another request
    )
    forged[hash_mismatch.id] = "description_hash_mismatch"

    stranger = Keys.generate().public_hex
    foreign_request = env.zap_request(3_000, recipient=stranger)
    foreign = nip57.build_zap_receipt(
        provider_keys,
        zap_request=foreign_request,
        description=foreign_request.to_json(),
        bolt11_invoice=fake_invoice(3_000, foreign_request.to_json()),
        paid_at=int(time.time()),
    )
    # the receipt itself is addressed to the agent (so it reaches us), the request is not
    foreign = sign_event(
        provider_keys,
        foreign.kind,
        "",
        [["p", env.agent.public_hex] if t[0] == "p" else list(t) for t in foreign.tags],
        foreign.created_at,
    )
    forged[foreign.id] = "foreign_p"

    unpaid_request = env.zap_request(8_000)
    unpaid_bolt11, _ = await env.invoice_for(unpaid_request, 8_000)  # real invoice, never paid
    unpaid = forged_receipt(provider_keys, unpaid_request, unpaid_bolt11)
    forged[unpaid.id] = "unpaid"

    never_request = env.zap_request(8_000)
    never_issued = forged_receipt(  # a well-formed invoice the provider never issued
        provider_keys, never_request, fake_invoice(8_000, never_request.to_json())
    )
    forged[never_issued.id] = "unpaid"

    # a replay under a new event id: same invoice, signed again by the provider
    replay_new_id = sign_event(
        provider_keys, paid_request.kind, "", paid_request.tags, paid_request.created_at + 1
    )
    replays = {replay_new_id.id}

    for event in [
        wrong_signer, wrong_amount, hash_mismatch, foreign, unpaid, never_issued, replay_new_id
    ]:
        await asyncio.to_thread(publish_sync, env.relays, event)
    # and the very same receipt event again, to both relays
    await asyncio.to_thread(publish_sync, env.relays, paid_request)

    results = await env.results_for(set(forged) | replays)
    await env.intake.drain()
    for result in results:
        if result.receipt_id in forged:
            assert result.outcome is ZapOutcome.REJECTED, result
            assert result.reason == forged[result.receipt_id], result
        else:
            assert result.outcome is ZapOutcome.POOL and not result.first_time
    # every rejection is logged with its reason
    logged = [r.getMessage() for r in caplog.records if r.name == "bot.agent.zaps"]
    for receipt_id, reason in forged.items():
        assert any(f"{receipt_id} rejected: {reason}" in m for m in logged), reason
    # the identical re-published receipt was dropped by the pool's dedupe: handled once only
    assert [r.receipt_id for r in env.intake.results].count(paid_request.id) == 1

    final = await env.ledger.pool_status()
    assert final.total_in_msat == 26_000
    assert final.zap_count == 2
    report = await check(env.ledger.db)
    assert report.ok, report.violations


async def test_zap_referencing_a_job_pays_the_job(zap_env: ZapEnv) -> None:
    env = zap_env
    job_event = os.urandom(32).hex()
    asker = Keys.generate().public_hex
    decision = await env.ledger.decide(job_event, asker, 4_000)  # pool empty: the asker pays
    assert decision.work_amount_msat == 4_000
    await env.zap(4_000, event_id=job_event)

    async def job_paid() -> bool:
        return (await env.ledger.job(job_event)).state == "paid"

    await wait_for(job_paid)
    await env.intake.drain()
    job_results = [r for r in env.intake.results if r.outcome is ZapOutcome.JOB]
    assert len(job_results) == 1
    assert job_results[0].job_id == job_event
    assert job_results[0].payment is not None
    assert job_results[0].payment.result is PaymentVerdict.PAID
    assert (await env.ledger.pool_status()).total_in_msat == 0
    # the same receipt delivered again (a replay, a restart) moves no money a second time
    (receipt,) = env.provider.receipts
    again = await env.intake.handle(receipt)
    assert (again.outcome, again.job_id, again.first_time) == (ZapOutcome.JOB, job_event, False)
    assert again.payment is not None and again.payment.result is PaymentVerdict.PAID
    assert (await env.ledger.balance(asker)).available_msat == 0
    assert (await env.ledger.pool_status()).total_in_msat == 0
    # a zap naming an event that is no job of ours funds the pool
    await env.zap(2_000, event_id=os.urandom(32).hex())

    async def pooled() -> bool:
        return (await env.ledger.pool_status()).total_in_msat == 2_000

    await wait_for(pooled)
    assert (await check(env.ledger.db)).ok


async def test_zap_request_without_amount_tag_credits_the_paid_invoice_amount(
    zap_env: ZapEnv,
) -> None:
    """NIP-57 appendix F checks the request's amount only if present (SPEC §3): a zap whose
    request has no ``amount`` tag is credited with the amount of the paid bolt11, once."""
    env = zap_env
    zapper = Keys.generate()
    request = sign_event(
        zapper,
        nip57.ZAP_REQUEST_KIND,
        "no amount tag",
        [["relays", *env.relays], ["p", env.agent.public_hex], ["lnurl", env.address.lnurl]],
    )
    assert request.tag_values("amount") == []
    bolt11, payment_hash = await env.invoice_for(request, 13_000)
    status, _ = await env.payer.pay(bolt11)
    assert status in (200, 201)

    async def credited() -> bool:
        return (await env.ledger.pool_status()).total_in_msat == 13_000

    async def receipt_listed() -> bool:  # the provider lists it once every relay took it
        return len(env.provider.receipts) == 1

    await wait_for(credited)
    await wait_for(receipt_listed)
    await env.intake.drain()
    (receipt,) = env.provider.receipts
    (result,) = await env.results_for({receipt.id})
    assert result.outcome is ZapOutcome.POOL and result.first_time
    assert result.zap is not None
    assert (result.zap.payment_hash, result.zap.amount_msat) == (payment_hash, 13_000)
    assert result.zap.zapper_pubkey == zapper.public_hex
    again = await env.intake.handle(receipt)  # a replay moves nothing a second time
    assert (again.outcome, again.first_time) == (ZapOutcome.POOL, False)
    pool = await env.ledger.pool_status()
    assert (pool.total_in_msat, pool.zap_count) == (13_000, 1)
    assert (await check(env.ledger.db)).ok


async def test_unreachable_lnurl_endpoint_credits_nothing_and_retries(
    zap_env: ZapEnv, lnurl_provider_factory: Callable[..., LnurlProvider]
) -> None:
    env = zap_env
    elsewhere = lnurl_provider_factory("nobody")
    elsewhere.stop()  # its address no longer answers
    lnurl = LnurlClient(httpx.AsyncClient(timeout=2.0), insecure_hosts=frozenset({elsewhere.host}))
    intake = ZapIntake(
        agent_pubkey=env.agent.public_hex,
        address=AgentAddress(elsewhere.address, lnurl),
        ledger=env.ledger,
        intake=Intake(env.ledger.db),
    )
    request = env.zap_request(1_000)
    receipt = forged_receipt(env.provider.keys, request, fake_invoice(1_000, request.to_json()))
    result = await intake.handle(receipt)
    assert result.outcome is ZapOutcome.RETRY and result.reason == "provider_unavailable"
    assert (await env.ledger.pool_status()).total_in_msat == 0


async def test_zap_request_signed_by_nostr_sdk_funds_the_pool(zap_env: ZapEnv) -> None:
    """A zap request built and signed by code nobody here wrote goes through the provider, and
    its receipt passes our appendix-F validation."""
    import nostr_sdk

    env = zap_env
    sdk_keys = nostr_sdk.Keys.generate()
    tags = [
        nostr_sdk.Tag.parse(["relays", *env.relays]),
        nostr_sdk.Tag.parse(["amount", "9000"]),
        nostr_sdk.Tag.parse(["lnurl", env.address.lnurl]),
        nostr_sdk.Tag.parse(["p", env.agent.public_hex]),
    ]
    signed = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(nip57.ZAP_REQUEST_KIND), "from rust-nostr")
        .tags(tags)
        .finalize(sdk_keys)
    )
    request = Event.from_json(signed.as_json())
    bolt11, payment_hash = await env.invoice_for(request, 9_000)
    await env.payer.pay(bolt11)

    async def credited() -> bool:
        return (await env.ledger.pool_status()).total_in_msat == 9_000

    await wait_for(credited)
    await env.intake.drain()
    [result] = [r for r in env.intake.results if r.zap and r.zap.payment_hash == payment_hash]
    assert result.outcome is ZapOutcome.POOL
    assert result.zap is not None
    assert result.zap.zapper_pubkey == sdk_keys.public_key().to_hex()
    assert result.zap.comment == "from rust-nostr"
    [recent] = await env.ledger.recent_zaps()
    assert (recent.funder, recent.amount_msat, recent.note) == (
        sdk_keys.public_key().to_hex(), 9_000, "from rust-nostr")


async def test_wallet_lookup_check_uses_the_wallet_behind_the_address(
    zap_env: ZapEnv, tmp_path: Path, lnbits_server: LnbitsServer
) -> None:
    """When the agent's own wallet backs its address, that wallet says whether a zap was paid."""
    env = zap_env
    db = await Database.open(tmp_path / "other.sqlite3")
    async with httpx.AsyncClient(timeout=30.0) as http:
        wallet = LnbitsWallet(
            http, url=lnbits_server.url, invoice_key=env.provider.account.inkey
        )
        ledger = Ledger(db, Limits(daily_free_msat=0, daily_free_jobs=0))
        intake = ZapIntake(
            agent_pubkey=env.agent.public_hex,
            address=env.address,
            ledger=ledger,
            intake=Intake(db),
            payment_check=WalletLookupCheck(wallet),
            metrics=(metrics := Metrics()),
        )
        try:
            unpaid_request = env.zap_request(4_000)
            unpaid_bolt11, _ = await env.invoice_for(unpaid_request, 4_000)
            unpaid = forged_receipt(env.provider.keys, unpaid_request, unpaid_bolt11)
            result = await intake.handle(unpaid)
            assert result.outcome is ZapOutcome.REJECTED and result.reason == "unpaid"
            assert metrics.registry.get_sample_value(
                "timmy_rejected_events_total", {"reason": "zap receipt"}) == 1

            await env.zap(4_000)

            async def published() -> bool:
                return bool(env.provider.receipts)

            await wait_for(published)
            result = await intake.handle(env.provider.receipts[0])
            assert result.outcome is ZapOutcome.POOL and result.first_time
            assert (await ledger.pool_status()).total_in_msat == 4_000
        finally:
            await db.close()


async def test_restart_redelivers_receipts_but_credits_once(zap_env: ZapEnv) -> None:
    """After a restart (new pool with an empty dedupe, new intake, same ledger file) the relays
    send the stored receipt again: it is validated again and moves nothing."""
    env = zap_env
    await env.zap(7_000)

    async def credited() -> bool:
        return (await env.ledger.pool_status()).total_in_msat == 7_000

    await wait_for(credited)

    async def listed() -> bool:  # the provider lists a receipt once every relay took it
        return bool(env.provider.receipts)

    await wait_for(listed)
    await env.intake.stop()

    pool = RelayPool([RelayConfig(url) for url in env.relays])
    again = ZapIntake(
        agent_pubkey=env.agent.public_hex,
        address=env.address,
        ledger=env.ledger,
        intake=Intake(env.ledger.db),
    )
    await pool.start()
    try:
        assert await pool.wait_connected(10.0, all_relays=True)
        await again.start(pool)
        receipt_ids = {r.id for r in env.provider.receipts}

        async def redelivered() -> bool:
            return receipt_ids <= {r.receipt_id for r in again.results}

        await wait_for(redelivered)
        await again.drain()
        assert [(r.outcome, r.first_time) for r in again.results] == [(ZapOutcome.POOL, False)]
        assert (await env.ledger.pool_status()).total_in_msat == 7_000
        assert (await check(env.ledger.db)).ok
    finally:
        await again.stop()
        await pool.stop()


async def test_killed_after_the_ledger_write_a_zap_is_thanked_once_after_restart(
    zap_env: ZapEnv,
) -> None:
    """The process dies right after the ledger credited the pool, before it claimed the thanks:
    the restarted intake counts nothing again and thanks the zapper once."""
    env = zap_env
    await env.intake.stop()  # the old process: it wrote the ledger, then died
    request, payment_hash = await env.zap(6_000)

    async def receipt_published() -> bool:
        return len(env.provider.receipts) == 1

    await wait_for(receipt_published)
    (receipt,) = env.provider.receipts
    await env.ledger.credit_pool(
        6_000, zap_key(payment_hash), source="zap", zapper_pubkey=request.pubkey
    )
    thanked: list[str] = []

    async def on_zap(result: ZapResult) -> None:
        thanked.append(result.receipt_id)

    again = ZapIntake(
        agent_pubkey=env.agent.public_hex,
        address=env.address,
        ledger=env.ledger,
        intake=Intake(env.ledger.db),
        on_zap=on_zap,
    )
    first = await again.handle(receipt)
    repeat = await again.handle(receipt)
    assert (first.outcome, first.first_time) == (ZapOutcome.POOL, True)
    assert (repeat.outcome, repeat.first_time) == (ZapOutcome.POOL, False)
    assert thanked == [receipt.id]
    assert (await env.ledger.pool_status()).total_in_msat == 6_000
    assert (await check(env.ledger.db)).ok


async def test_zap_request_signed_by_the_agent_never_funds_the_pool(zap_env: ZapEnv) -> None:
    """Such a receipt is one of the Lightning-address backend's invoices: counted by the
    settlement path only, even when no wallet is wired to take it."""
    env = zap_env
    intake = ZapIntake(
        agent_pubkey=env.agent.public_hex,
        address=env.address,
        ledger=env.ledger,
        intake=Intake(env.ledger.db),
    )
    request = nip57.build_zap_request(
        env.agent, recipient_pubkey=env.agent.public_hex, amount_msat=5_000, relays=env.relays
    )
    receipt = forged_receipt(env.provider.keys, request, fake_invoice(5_000, request.to_json()))
    result = await intake.handle(receipt)
    assert result.outcome is ZapOutcome.OWN_INVOICE
    assert (await env.ledger.pool_status()).total_in_msat == 0


def test_zap_note_is_one_printable_line() -> None:
    assert zap_note("  thanks\n\tfor   the\x00 answers ") == "thanks for the answers"
    assert zap_note("x" * 1000) == "x" * NOTE_CHARS
    assert zap_note("\n\u200b") == ""
