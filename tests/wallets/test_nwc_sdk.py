"""nostr-sdk's own NWC client (code nobody here wrote) against the NIP-47 wallet-service fixture:
proof that the fixture — and so what our backend is tested against — speaks real NIP-47."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import httpx
import nostr_sdk
import pytest

from bot.nostr.nip47 import Encryption
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer
from tests.fixtures.nwc_service import LnbitsRest, NwcServiceFactory


@pytest.fixture
async def payer(
    lnbits_server: LnbitsServer, lnbits_new_wallet: Callable[..., LnbitsAccount]
) -> AsyncIterator[LnbitsRest]:
    async with httpx.AsyncClient(base_url=lnbits_server.url, timeout=30.0) as http:
        yield LnbitsRest(http, lnbits_new_wallet("sdkpayer", 10_000))


SdkClientFactory = Callable[[str], nostr_sdk.NostrWalletConnect]


@pytest.fixture
async def sdk_client() -> AsyncIterator[SdkClientFactory]:
    """nostr-sdk NWC clients, each shut down at teardown (its relay connections closed), so
    none lingers on the shared relay; the shutdown is bounded by a hang guard."""
    made: list[nostr_sdk.NostrWalletConnect] = []

    def build(uri_text: str) -> nostr_sdk.NostrWalletConnect:
        uri = nostr_sdk.NostrWalletConnectUri.parse(uri_text)
        builder = nostr_sdk.NostrWalletConnectBuilder(uri).timeout(timedelta(seconds=20))
        made.append(builder.build())
        return made[-1]

    yield build
    for nwc in made:
        await asyncio.wait_for(nwc.client().shutdown(), 30.0)


async def test_sdk_parses_our_uri(relay_url: str, nwc_service_factory: NwcServiceFactory) -> None:
    service = await nwc_service_factory(relay_url)
    for text in (service.uri.to_uri(), service.uri.to_uri().replace("://", ":", 1)):
        try:
            parsed = nostr_sdk.NostrWalletConnectUri.parse(text)
        except Exception:
            if "://" in text:
                raise
            continue  # nostr-sdk only knows the // form; ours reads both
        assert parsed.public_key().to_hex() == service.uri.wallet_pubkey
        assert parsed.secret().to_hex() == service.uri.secret
        assert [r.__str__().rstrip("/") for r in parsed.relays()] == [relay_url]


async def test_sdk_client_balance_invoice_lookup_pay(
    relay_url: str, nwc_service_factory: NwcServiceFactory, payer: LnbitsRest,
    sdk_client: SdkClientFactory,
) -> None:
    service = await nwc_service_factory(relay_url, balance_sat=2_000)
    nwc = sdk_client(service.uri.to_uri())

    assert (await nwc.get_balance()).balance == 2_000_000

    made = await nwc.make_invoice(
        nostr_sdk.MakeInvoiceRequest(
            amount=7_000, description="from nostr-sdk", description_hash=None, expiry=600
        )
    )
    assert made.invoice.startswith("lnbc")
    assert made.payment_hash is not None and len(made.payment_hash) == 64

    looked = await nwc.lookup_invoice(
        nostr_sdk.LookupInvoiceRequest(payment_hash=made.payment_hash, invoice=None)
    )
    assert looked.amount == 7_000
    assert looked.state is not None and "PENDING" in str(looked.state).upper()

    status, _ = await payer.pay(made.invoice)
    assert status in (200, 201)
    for _ in range(100):
        looked = await nwc.lookup_invoice(
            nostr_sdk.LookupInvoiceRequest(payment_hash=made.payment_hash, invoice=None)
        )
        if looked.state is not None and "SETTLED" in str(looked.state).upper():
            break
        await asyncio.sleep(0.2)
    assert looked.state is not None and "SETTLED" in str(looked.state).upper()
    assert looked.preimage is not None
    assert hashlib.sha256(bytes.fromhex(looked.preimage)).hexdigest() == made.payment_hash

    target = await payer.create_invoice(500, memo="paid by nostr-sdk")
    paid = await nwc.pay_invoice(
        nostr_sdk.PayInvoiceRequest(id=None, invoice=str(target["bolt11"]), amount=None)
    )
    assert hashlib.sha256(bytes.fromhex(paid.preimage)).hexdigest() == target["payment_hash"]
    assert (await nwc.get_balance()).balance == 2_000_000 + 7_000 - 500_000
    assert {scheme for _, scheme in service.requests_seen} == {Encryption.NIP44_V2}
    methods = {m for m, _ in service.requests_seen}
    assert {"get_balance", "make_invoice", "lookup_invoice", "pay_invoice"} <= methods


async def test_sdk_client_sees_nip47_errors(
    relay_url: str, nwc_service_factory: NwcServiceFactory, payer: LnbitsRest,
    sdk_client: SdkClientFactory,
) -> None:
    service = await nwc_service_factory(relay_url, balance_sat=1)
    nwc = sdk_client(service.uri.to_uri())
    target = await payer.create_invoice(900, memo="too much")
    with pytest.raises(Exception, match=r"(?i)insufficient"):
        await nwc.pay_invoice(
            nostr_sdk.PayInvoiceRequest(id=None, invoice=str(target["bolt11"]), amount=None)
        )


async def test_sdk_client_follows_our_info_event_to_nip04(
    relay_url: str, nwc_service_factory: NwcServiceFactory, sdk_client: SdkClientFactory
) -> None:
    """An info event without an encryption tag means NIP-04, for nostr-sdk as for us."""
    service = await nwc_service_factory(relay_url, balance_sat=3, encryptions=())
    nwc = sdk_client(service.uri.to_uri())
    assert (await nwc.get_balance()).balance == 3_000
    assert service.requests_seen == [("get_balance", Encryption.NIP04)]
