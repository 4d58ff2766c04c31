"""The NWC backend (on the agent's relay pool) against a NIP-47 wallet service on a real relay,
backed by real LNbits."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

from bot.nostr.nip47 import Encryption, ErrorCode, NwcUri
from bot.wallets.base import (
    InvalidInvoice,
    InvoiceState,
    PaymentState,
    Settlement,
    Wallet,
    WalletError,
    WalletProtocolError,
    WalletRefused,
    WalletUnavailable,
)
from bot.wallets.nwc import NwcWallet, error_for, payment_state_for
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer
from tests.fixtures.nwc_service import LnbitsRest, NwcService, NwcServiceFactory
from tests.fixtures.relay import RelayFactory

ClientFactory = Callable[..., AbstractAsyncContextManager[NwcWallet]]


@pytest.fixture
def nwc_client() -> ClientFactory:
    @asynccontextmanager
    async def open_client(uri: NwcUri, **kwargs: Any) -> AsyncIterator[NwcWallet]:
        wallet = await NwcWallet.open(uri, **kwargs)
        try:
            yield wallet
        finally:
            await wallet.aclose()

    return open_client


@pytest.fixture
async def payer(
    lnbits_server: LnbitsServer, lnbits_new_wallet: Callable[..., LnbitsAccount]
) -> AsyncIterator[LnbitsRest]:
    async with httpx.AsyncClient(base_url=lnbits_server.url, timeout=30.0) as http:
        yield LnbitsRest(http, lnbits_new_wallet("payer", 50_000))


async def next_settlement(wallet: NwcWallet, timeout: float = 20.0) -> Settlement:
    async def first() -> Settlement:
        async for item in wallet.settlements():
            return item
        raise AssertionError("settlement stream ended")

    return await asyncio.wait_for(first(), timeout)


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    async def loop() -> None:
        while not await check():
            await asyncio.sleep(0.2)

    await asyncio.wait_for(loop(), timeout)


async def test_invoice_paid_is_settled_and_notified(
    relay_url: str,
    nwc_service_factory: NwcServiceFactory,
    nwc_client: ClientFactory,
    payer: LnbitsRest,
) -> None:
    service = await nwc_service_factory(relay_url)
    async with nwc_client(service.uri, poll_interval_s=30.0) as wallet:
        assert isinstance(wallet, Wallet)
        assert wallet.encryption is Encryption.NIP44_V2
        invoice = await wallet.make_invoice(21_000, description="a question")
        assert invoice.amount_msat == 21_000 and invoice.expires_at > invoice.created_at
        assert (await wallet.lookup_invoice(invoice.payment_hash)).state is InvoiceState.PENDING

        status, _ = await payer.pay(invoice.bolt11)
        assert status in (200, 201)
        settlement = await next_settlement(wallet)
        assert settlement.payment_hash == invoice.payment_hash
        assert settlement.amount_msat == 21_000
        assert settlement.preimage is not None
        assert hashlib.sha256(bytes.fromhex(settlement.preimage)).hexdigest() == (
            invoice.payment_hash
        )
        looked = await wallet.lookup_invoice(invoice.payment_hash)
        assert looked.state is InvoiceState.SETTLED and looked.preimage == settlement.preimage
    assert ("make_invoice", Encryption.NIP44_V2) in service.requests_seen


async def test_description_hash_invoice(
    relay_url: str, nwc_service_factory: NwcServiceFactory, nwc_client: ClientFactory
) -> None:
    service = await nwc_service_factory(relay_url)
    digest = hashlib.sha256(b"zap request json").digest()
    async with nwc_client(service.uri) as wallet:
        invoice = await wallet.make_invoice(5_000, description_hash=digest)
    from bot.wallets.bolt11 import decode_invoice

    assert decode_invoice(invoice.bolt11).description_hash == digest.hex()


async def test_pay_invoice_balance_and_lookup_payment(
    relay_url: str,
    nwc_service_factory: NwcServiceFactory,
    nwc_client: ClientFactory,
    payer: LnbitsRest,
) -> None:
    service = await nwc_service_factory(relay_url, balance_sat=1_000)
    async with nwc_client(service.uri) as wallet:
        assert await wallet.balance_msat() == 1_000_000
        target = await payer.create_invoice(300, memo="refund")
        result = await wallet.pay_invoice(str(target["bolt11"]), max_fee_msat=10_000)
        assert result.state is PaymentState.SUCCEEDED
        assert result.preimage is not None
        assert hashlib.sha256(bytes.fromhex(result.preimage)).hexdigest() == target["payment_hash"]
        assert await wallet.balance_msat() == 700_000
        looked = await wallet.lookup_payment(str(target["payment_hash"]))
        assert looked.state is PaymentState.SUCCEEDED and looked.preimage == result.preimage
        unknown = await wallet.lookup_payment("ab" * 32)
        assert unknown.state is PaymentState.NOT_FOUND
        with pytest.raises(WalletRefused) as info:
            await wallet.lookup_invoice("ab" * 32)
        assert info.value.code == "not_found"
        # paying the same invoice again is refused by the wallet: a failure, not a second payment
        again = await wallet.pay_invoice(str(target["bolt11"]), max_fee_msat=10_000)
        assert again.state is PaymentState.FAILED
        assert await wallet.balance_msat() == 700_000


async def test_insufficient_balance_is_a_failed_payment(
    relay_url: str,
    nwc_service_factory: NwcServiceFactory,
    nwc_client: ClientFactory,
    payer: LnbitsRest,
) -> None:
    service = await nwc_service_factory(relay_url, balance_sat=10)
    async with nwc_client(service.uri) as wallet:
        target = await payer.create_invoice(500, memo="too much")
        result = await wallet.pay_invoice(str(target["bolt11"]), max_fee_msat=1_000)
        assert result.state is PaymentState.FAILED
        assert result.reason == "insufficient_balance"
        with pytest.raises(InvalidInvoice):
            await wallet.pay_invoice("lnbc1notaninvoice", max_fee_msat=1_000)


async def test_nip04_fallback_when_info_has_no_encryption_tag(
    relay_url: str,
    nwc_service_factory: NwcServiceFactory,
    nwc_client: ClientFactory,
    payer: LnbitsRest,
) -> None:
    service = await nwc_service_factory(relay_url, balance_sat=100, encryptions=())
    async with nwc_client(service.uri, poll_interval_s=30.0) as wallet:
        assert wallet.encryption is Encryption.NIP04
        assert await wallet.balance_msat() == 100_000
        invoice = await wallet.make_invoice(2_000, description="legacy")
        await payer.pay(invoice.bolt11)
        settlement = await next_settlement(wallet)  # arrives as a kind-23196 notification
        assert settlement.payment_hash == invoice.payment_hash
    assert {scheme for _, scheme in service.requests_seen} == {Encryption.NIP04}


async def test_notifications_lost_then_polling_finds_the_payment(
    relay_url: str,
    nwc_service_factory: NwcServiceFactory,
    nwc_client: ClientFactory,
    payer: LnbitsRest,
) -> None:
    service = await nwc_service_factory(relay_url)
    service.notify = False
    async with nwc_client(service.uri, poll_interval_s=0.5) as wallet:
        invoice = await wallet.make_invoice(3_000, description="polled")
        await payer.pay(invoice.bolt11)
        settlement = await next_settlement(wallet)
        assert settlement.payment_hash == invoice.payment_hash
        assert settlement.amount_msat == 3_000
    assert service.notifications_sent == 0


async def test_late_answer_leaves_payment_pending_not_failed(
    relay_url: str,
    nwc_service_factory: NwcServiceFactory,
    nwc_client: ClientFactory,
    payer: LnbitsRest,
) -> None:
    service = await nwc_service_factory(relay_url, balance_sat=1_000)
    async with nwc_client(service.uri, request_timeout_s=1.5) as wallet:
        target = await payer.create_invoice(100, memo="slow")
        service.response_delay_s = 5.0
        result = await wallet.pay_invoice(str(target["bolt11"]), max_fee_msat=1_000)
        assert result.state is PaymentState.PENDING
        with pytest.raises(WalletUnavailable):
            await wallet.balance_msat()
        service.response_delay_s = 0.0

        async def paid() -> bool:
            try:
                looked = await wallet.lookup_payment(str(target["payment_hash"]))
            except WalletUnavailable:  # a slow answer on a busy machine: ask again
                return False
            return looked.state is PaymentState.SUCCEEDED

        await wait_until(paid)
        assert await wallet.balance_msat() == 900_000


async def test_unknown_client_key_is_unauthorized(
    relay_url: str, nwc_service_factory: NwcServiceFactory, nwc_client: ClientFactory
) -> None:
    service = await nwc_service_factory(relay_url)
    from bot.nostr.keys import Keys

    stranger = NwcUri(service.uri.wallet_pubkey, service.uri.relays, Keys.generate().secret_hex)
    async with nwc_client(stranger) as wallet:
        with pytest.raises(WalletRefused) as info:
            await wallet.balance_msat()
        assert info.value.code == "unauthorized"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (ErrorCode.RATE_LIMITED, WalletUnavailable),
        (ErrorCode.INTERNAL, WalletUnavailable),
        (ErrorCode.RESTRICTED, WalletRefused),
        (ErrorCode.QUOTA_EXCEEDED, WalletRefused),
    ],
)
async def test_error_codes_over_the_wire(
    relay_url: str,
    nwc_service_factory: NwcServiceFactory,
    nwc_client: ClientFactory,
    code: ErrorCode,
    expected: type[Exception],
) -> None:
    service = await nwc_service_factory(relay_url)
    service.forced_errors["get_balance"] = code
    async with nwc_client(service.uri) as wallet:
        with pytest.raises(expected):
            await wallet.balance_msat()


async def test_finding_2_an_answer_with_a_huge_integer_fails_the_request_at_once(
    relay_url: str, nwc_service_factory: NwcServiceFactory, nwc_client: ClientFactory
) -> None:
    service = await nwc_service_factory(relay_url)
    service.forced_payloads["get_balance"] = (
        '{"result_type":"get_balance","error":null,"result":{"balance":' + "1" * 4301 + "}}")
    # before the fix the decoder's ValueError escaped the event handler and the request
    # waited out its whole timeout (WalletUnavailable); now the answer fails it at once
    async with nwc_client(service.uri, request_timeout_s=120.0) as wallet:
        with pytest.raises(WalletProtocolError, match="integer longer than"):
            await wallet.balance_msat()


def test_every_error_code_has_one_typed_outcome() -> None:
    certainly_not_paid = {
        ErrorCode.PAYMENT_FAILED, ErrorCode.INSUFFICIENT_BALANCE, ErrorCode.QUOTA_EXCEEDED,
        ErrorCode.RESTRICTED, ErrorCode.UNAUTHORIZED, ErrorCode.RATE_LIMITED,
        ErrorCode.NOT_IMPLEMENTED, ErrorCode.UNSUPPORTED_ENCRYPTION,
    }
    from bot.nostr.nip47 import ErrorInfo

    for code in ErrorCode:
        state = payment_state_for(code)
        expected = PaymentState.FAILED if code in certainly_not_paid else PaymentState.PENDING
        assert state is expected, code
        err = error_for(ErrorInfo(code, "msg"))
        if code in (ErrorCode.INTERNAL, ErrorCode.RATE_LIMITED):
            assert isinstance(err, WalletUnavailable)
        else:
            assert isinstance(err, WalletRefused) and err.code == code.value.lower()


async def test_no_info_event_means_unavailable(relay_url: str) -> None:
    from bot.nostr.keys import Keys

    uri = NwcUri(Keys.generate().public_hex, (relay_url,), Keys.generate().secret_hex)
    with pytest.raises(WalletUnavailable):
        await NwcWallet.open(uri, info_timeout_s=1.0)


async def test_secret_never_in_errors(
    relay_url: str, nwc_service_factory: NwcServiceFactory, nwc_client: ClientFactory
) -> None:
    service: NwcService = await nwc_service_factory(relay_url)
    service.forced_errors["get_balance"] = ErrorCode.RESTRICTED
    async with nwc_client(service.uri) as wallet:
        with pytest.raises(WalletRefused) as info:
            await wallet.balance_msat()
    assert service.uri.secret not in str(info.value)
    assert service.uri.secret not in repr(wallet.__dict__.get("_uri"))


async def test_unsupported_encryption_answer_is_typed(
    relay_url: str, nwc_service_factory: NwcServiceFactory, nwc_client: ClientFactory
) -> None:
    """A wallet that only speaks NIP-04 answers a NIP-44 request with UNSUPPORTED_ENCRYPTION
    (sealed with NIP-04); the client reads it and raises a typed refusal."""
    service = await nwc_service_factory(relay_url, encryptions=[Encryption.NIP04])
    async with nwc_client(service.uri) as wallet:
        assert wallet.encryption is Encryption.NIP04
        wallet._encryption = Encryption.NIP44_V2  # as if the info event had been misread
        with pytest.raises(WalletRefused) as info:
            await wallet.balance_msat()
        assert info.value.code == "unsupported_encryption"


async def test_two_relays_in_the_uri(
    relay_url: str,
    relay_factory: RelayFactory,
    nwc_service_factory: NwcServiceFactory,
    nwc_client: ClientFactory,
    payer: LnbitsRest,
) -> None:
    """Requests and answers travel over both relays of the URI; each is handled once."""
    service = await nwc_service_factory([relay_url, relay_factory().url], balance_sat=50)
    async with nwc_client(service.uri, poll_interval_s=3600.0) as wallet:
        assert await wallet.balance_msat() == 50_000
        invoice = await wallet.make_invoice(1_000, description="two relays")
        await payer.pay(invoice.bolt11)
        settlement = await next_settlement(wallet)
        assert settlement.payment_hash == invoice.payment_hash
    assert [m for m, _ in service.requests_seen] == ["get_info", "get_balance", "make_invoice"]


async def test_network_comes_from_get_info(
    relay_url: str, nwc_service_factory: NwcServiceFactory, nwc_client: ClientFactory,
    payer: LnbitsRest,
) -> None:
    service = await nwc_service_factory(relay_url, balance_sat=10)
    service.network_name = "regtest"
    async with nwc_client(service.uri) as wallet:
        assert wallet.network == "bcrt"
        mainnet_invoice = await payer.create_invoice(1, memo="lnbc")
        with pytest.raises(InvalidInvoice) as info:  # an lnbc invoice on a regtest wallet
            await wallet.pay_invoice(str(mainnet_invoice["bolt11"]), max_fee_msat=1_000)
        assert info.value.code == "wrong_network"
    service.network_name = "mainnet"
    async with nwc_client(service.uri) as wallet:
        assert wallet.network == "bc"
    async with nwc_client(service.uri, network="tb") as wallet:
        assert wallet.network == "tb"  # the operator's setting wins


async def test_methods_the_wallet_does_not_offer_are_refused_locally(
    relay_url: str, nwc_service_factory: NwcServiceFactory, nwc_client: ClientFactory,
    payer: LnbitsRest,
) -> None:
    """A receive-only connection (no pay_invoice in its info event): nothing is sent."""
    service = await nwc_service_factory(
        relay_url, methods=("get_info", "make_invoice", "lookup_invoice")
    )
    async with nwc_client(service.uri) as wallet:
        target = await payer.create_invoice(1, memo="x")
        with pytest.raises(WalletRefused) as info:
            await wallet.pay_invoice(str(target["bolt11"]), max_fee_msat=1_000)
        assert info.value.code == "not_implemented"
        with pytest.raises(WalletRefused):
            await wallet.balance_msat()
        await wallet.make_invoice(1_000)
    assert "pay_invoice" not in [m for m, _ in service.requests_seen]
    assert "get_balance" not in [m for m, _ in service.requests_seen]


async def test_aclose_returns_while_the_relay_is_frozen(
    relay_factory: RelayFactory, nwc_service_factory: NwcServiceFactory, nwc_client: ClientFactory
) -> None:
    """A relay that stops reading (SIGSTOP: the socket stays open, nothing is answered) must not
    hold the wallet's close: unsubscribe, the close handshake and the pool stop are bounded."""
    relay = relay_factory()
    service = await nwc_service_factory(relay.url, balance_sat=5)
    wallet = await NwcWallet.open(service.uri, poll_interval_s=0.2, request_timeout_s=3600.0)
    assert relay.pid is not None
    os.killpg(relay.pid, signal.SIGSTOP)
    try:
        asking = asyncio.create_task(wallet.balance_msat())  # a request that gets no answer
        await asyncio.sleep(0.2)
        await asyncio.wait_for(wallet.aclose(), 60.0)  # a hang guard, not a speed check
        with pytest.raises(WalletError):
            await asyncio.wait_for(asking, 60.0)
    finally:
        os.killpg(relay.pid, signal.SIGCONT)
