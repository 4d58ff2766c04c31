"""The receive-only Lightning-address backend against the LNURL/NIP-57 provider fixture (backed by
real LNbits, receipts on a real relay): the agent zaps itself an invoice, and learns of payment
from the zap receipt or the LUD-21 verify URL, whichever comes first — once."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bot.agent.settlements import SettlementProcessor
from bot.agent.zaps import ZapIntake, ZapOutcome
from bot.nostr.keys import Keys
from bot.relays.config import RelayConfig
from bot.relays.pool import RelayPool
from bot.wallets.base import (
    InvoiceState,
    LnurlError,
    PaymentState,
    Settlement,
    Wallet,
    WalletProtocolError,
    WalletRefused,
)
from bot.wallets.bolt11 import decode_invoice
from bot.wallets.lightning_address import AgentAddress, LightningAddressWallet
from bot.wallets.lnurl import LnurlClient
from storage import Database, Intake, Ledger, Limits, PaymentVerdict, check
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer
from tests.fixtures.lnurl_provider import LnurlProvider
from tests.fixtures.nwc_service import LnbitsRest


@dataclass
class AddressEnv:
    agent: Keys
    provider: LnurlProvider
    relay: str
    lnurl: LnurlClient
    address: AgentAddress
    payer: LnbitsRest
    db: Database

    def wallet(self, poll_interval_s: float = 3600.0,
               verify_url_template: str | None = None) -> LightningAddressWallet:
        return LightningAddressWallet(
            address=self.address,
            lnurl=self.lnurl,
            keys=self.agent,
            receipt_relays=[self.relay],
            poll_interval_s=poll_interval_s,
            verify_url_template=verify_url_template,
        )


@pytest.fixture
async def address_env(
    tmp_path: Path,
    relay_url: str,
    lnurl_provider_factory: Callable[..., LnurlProvider],
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> AsyncIterator[AddressEnv]:
    provider = lnurl_provider_factory("agent")
    db = await Database.open(tmp_path / "ledger.sqlite3")
    async with (
        httpx.AsyncClient(timeout=30.0) as http,
        httpx.AsyncClient(base_url=lnbits_server.url, timeout=30.0) as lnbits_http,
    ):
        lnurl = LnurlClient(http, insecure_hosts=frozenset({provider.host}))
        payer = LnbitsRest(lnbits_http, lnbits_new_wallet("lapayer", 10_000))
        try:
            yield AddressEnv(
                Keys.generate(), provider, relay_url, lnurl,
                AgentAddress(provider.address, lnurl), payer, db,
            )
        finally:
            await db.close()


async def first_settlement(wallet: LightningAddressWallet, timeout: float = 30.0) -> Settlement:
    async def first() -> Settlement:
        async for item in wallet.settlements():
            return item
        raise AssertionError("settlement stream ended")

    return await asyncio.wait_for(first(), timeout)


async def test_invoice_settled_by_the_zap_receipt(address_env: AddressEnv) -> None:
    env = address_env
    wallet = env.wallet()  # verify polling effectively off: only the receipt can settle it
    assert isinstance(wallet, Wallet)
    ledger = Ledger(env.db, Limits(daily_free_msat=0, daily_free_jobs=0))
    pool = RelayPool([RelayConfig(env.relay)])
    intake = ZapIntake(
        agent_pubkey=env.agent.public_hex,
        address=env.address,
        ledger=ledger,
        intake=Intake(env.db),
        own_invoice=wallet.receipt_seen,
    )
    await pool.start()
    try:
        assert await pool.wait_connected(10.0)
        await intake.start(pool)
        invoice = await wallet.make_invoice(12_000, description="question 1")
        decoded = decode_invoice(invoice.bolt11)
        assert decoded.amount_msat == 12_000 and decoded.description_hash is not None
        assert (await wallet.lookup_invoice(invoice.payment_hash)).state is InvoiceState.PENDING

        status, _ = await env.payer.pay(invoice.bolt11)
        assert status in (200, 201)
        settlement = await first_settlement(wallet)
        assert settlement.payment_hash == invoice.payment_hash
        assert settlement.amount_msat == 12_000
        assert settlement.preimage is not None
        assert hashlib.sha256(bytes.fromhex(settlement.preimage)).hexdigest() == (
            invoice.payment_hash
        )
        await intake.drain()
        assert [r.outcome for r in intake.results] == [ZapOutcome.OWN_INVOICE]
        # the agent's own invoice is a job payment, never pool funding
        assert (await ledger.pool_status()).total_in_msat == 0
        # the receipt, then the verify URL: the wallet reports the payment once
        looked = await wallet.lookup_invoice(invoice.payment_hash)
        assert looked.state is InvoiceState.SETTLED and looked.preimage == settlement.preimage
        seen_zap = intake.results[0].zap
        assert seen_zap is not None and wallet.receipt_seen(seen_zap) is False
    finally:
        await intake.stop()
        await pool.stop()
        await wallet.aclose()


async def test_invoice_settled_by_the_verify_url_pays_the_job_once(
    address_env: AddressEnv,
) -> None:
    env = address_env
    env.provider.publish_receipts = False  # no receipt ever: only LUD-21 verify can tell
    wallet = env.wallet(poll_interval_s=0.3)
    ledger = Ledger(env.db, Limits(daily_free_msat=0, daily_free_jobs=0))
    job_id = os.urandom(32).hex()
    decision = await ledger.decide(job_id, Keys.generate().public_hex, 3_000)
    invoice = await wallet.make_invoice(decision.work_amount_msat, description="job")
    await ledger.attach_invoice(job_id, invoice.payment_hash, invoice.amount_msat,
                                invoice.expires_at)
    wallet.start()
    try:
        await env.payer.pay(invoice.bolt11)
        settlement = await first_settlement(wallet)
        assert settlement.payment_hash == invoice.payment_hash
        processor = SettlementProcessor(ledger)
        applied = await processor.apply(settlement)
        again = await processor.apply(settlement)  # a repeat changes nothing
        assert applied is not None and applied.outcome is not None
        assert applied.outcome.result is PaymentVerdict.PAID
        assert again is not None and again.outcome == applied.outcome
        assert (await ledger.job(job_id)).state == "paid"
        assert (await check(env.db)).ok
    finally:
        await wallet.aclose()


async def test_receive_only_and_bad_requests(address_env: AddressEnv) -> None:
    env = address_env
    wallet = env.wallet()
    with pytest.raises(WalletRefused) as info:
        await wallet.pay_invoice("lnbc1", max_fee_msat=1)
    assert info.value.code == "receive_only"
    with pytest.raises(WalletRefused):
        await wallet.balance_msat()
    assert (await wallet.lookup_payment("ab" * 32)).state is PaymentState.NOT_FOUND
    with pytest.raises(WalletRefused) as info:
        await wallet.make_invoice(1_000, description_hash=b"\x00" * 32)
    assert info.value.code == "unsupported"
    with pytest.raises(WalletRefused) as info:
        await wallet.lookup_invoice("cd" * 32)
    assert info.value.code == "not_found"
    with pytest.raises(LnurlError) as lnurl_info:
        await wallet.make_invoice(500)  # below the provider's minSendable
    assert lnurl_info.value.code == "out_of_range"
    with pytest.raises(WalletRefused):
        await wallet.make_invoice(0)


async def test_address_without_zap_support_is_refused(
    address_env: AddressEnv, lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    """LNbits' own lightning address has no allowsNostr: it cannot back this wallet."""
    account = lnbits_new_wallet("plain")
    host = lnbits_server.url.removeprefix("http://")
    async with httpx.AsyncClient(timeout=30.0) as http:
        lnurl = LnurlClient(http, insecure_hosts=frozenset({host}))
        address = AgentAddress(account.lightning_address, lnurl)
        with pytest.raises(LnurlError) as info:
            await address.nostr_pubkey()
    assert info.value.code == "no_zaps"


async def test_receipt_settles_an_invoice_made_before_a_restart(address_env: AddressEnv) -> None:
    env = address_env
    before = env.wallet()
    invoice = await before.make_invoice(6_000, description="asked before the restart")
    after = env.wallet()  # a new process: nothing in memory
    ledger = Ledger(env.db, Limits(daily_free_msat=0, daily_free_jobs=0))
    pool = RelayPool([RelayConfig(env.relay)])
    intake = ZapIntake(
        agent_pubkey=env.agent.public_hex,
        address=env.address,
        ledger=ledger,
        intake=Intake(env.db),
        own_invoice=after.receipt_seen,
    )
    await pool.start()
    try:
        assert await pool.wait_connected(10.0)
        await intake.start(pool)
        await env.payer.pay(invoice.bolt11)
        settlement = await first_settlement(after)
        assert settlement.payment_hash == invoice.payment_hash
        assert settlement.amount_msat == 6_000
        assert (await after.lookup_invoice(invoice.payment_hash)).state is InvoiceState.SETTLED
        assert (await ledger.pool_status()).total_in_msat == 0
    finally:
        await intake.stop()
        await pool.stop()


async def test_lookup_after_a_restart_through_the_verify_url(address_env: AddressEnv) -> None:
    """An invoice made before a restart is found again through the verify URL: its LUD-21
    ``pr`` gives back the amount and expiry, and the lookup settles it once paid."""
    env = address_env
    env.provider.publish_receipts = False  # no receipt: only the verify URL can tell
    template = f"{env.provider.base_url}/lnurlp/verify/{{payment_hash}}"
    before = env.wallet()
    invoice = await before.make_invoice(7_000, description="asked before the restart")
    other = await before.make_invoice(2_000, description="another invoice")

    after = env.wallet(verify_url_template=template)  # a new process: nothing in memory
    looked = await after.lookup_invoice(invoice.payment_hash)
    assert looked.state is InvoiceState.PENDING and looked.amount_msat == 7_000
    with pytest.raises(WalletRefused) as info:  # the provider knows no such invoice
        await after.lookup_invoice("cd" * 32)
    assert info.value.code == "not_found"
    with pytest.raises(WalletRefused) as info:  # not a payment hash: nothing is asked
        await after.lookup_invoice("../../etc")
    assert info.value.code == "not_found"
    with pytest.raises(WalletRefused):  # without a template the old invoice stays unknown
        await env.wallet().lookup_invoice(invoice.payment_hash)
    # a verify URL that answers about another invoice is refused, never trusted
    lying = env.wallet(verify_url_template=(
        f"{env.provider.base_url}/lnurlp/verify/{other.payment_hash}?asked={{payment_hash}}"))
    with pytest.raises(WalletProtocolError):
        await lying.lookup_invoice(invoice.payment_hash)
    on_testnet = LightningAddressWallet(
        address=env.address, lnurl=env.lnurl, keys=env.agent, receipt_relays=[env.relay],
        network="tb", verify_url_template=template,
    )
    with pytest.raises(WalletProtocolError):  # an lnbc pr is not a testnet wallet's invoice
        await on_testnet.lookup_invoice(invoice.payment_hash)

    status, _ = await env.payer.pay(invoice.bolt11)
    assert status in (200, 201)
    settled = await after.lookup_invoice(invoice.payment_hash)
    assert settled.state is InvoiceState.SETTLED and settled.amount_msat == 7_000
    assert settled.preimage is not None
    assert hashlib.sha256(bytes.fromhex(settled.preimage)).hexdigest() == invoice.payment_hash
    settlement = await first_settlement(after)
    assert (settlement.payment_hash, settlement.amount_msat) == (invoice.payment_hash, 7_000)
    assert await after.lookup_invoice(invoice.payment_hash) == settled  # reported once
