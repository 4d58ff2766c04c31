"""The LNbits adapter facing a misbehaving or slow server (httpx.MockTransport, no patching):
malformed answers are typed errors, and a payment whose answer is late or lost is PENDING."""

import hashlib
import json
import os
import time

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.wallets.base import PaymentState, WalletProtocolError, WalletUnavailable
from bot.wallets.bolt11 import encode_invoice
from bot.wallets.lnbits import LnbitsWallet, parse_webhook_hash, parse_ws_message

URL = "http://lnbits.test"


def invoice(amount_msat: int = 5_000) -> tuple[str, str]:
    payment_hash = hashlib.sha256(os.urandom(32)).hexdigest()
    bolt11 = encode_invoice(network="bc", amount_msat=amount_msat, payment_hash=payment_hash,
                            payment_secret=os.urandom(32).hex(), created_at=int(time.time()),
                            expiry_s=600, node_key_hex=os.urandom(32).hex(), description="x")
    return payment_hash, bolt11


def wallet(handler: httpx.MockTransport) -> tuple[LnbitsWallet, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=handler)
    return LnbitsWallet(http, url=URL, invoice_key="inkey", admin_key="adminkey"), http


async def test_invoice_that_does_not_match_the_request_is_refused() -> None:
    payment_hash, bolt11 = invoice(9_000)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"payment_hash": payment_hash, "bolt11": bolt11})

    lnbits, http = wallet(httpx.MockTransport(handler))
    async with http:
        with pytest.raises(WalletProtocolError):
            await lnbits.make_invoice(5_000)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(201, content=b"<html>"),
        httpx.Response(201, json=[1, 2]),
        httpx.Response(201, json={"payment_hash": 5}),
    ],
)
async def test_malformed_answers_are_protocol_errors(response: httpx.Response) -> None:
    lnbits, http = wallet(httpx.MockTransport(lambda request: response))
    async with http:
        with pytest.raises(WalletProtocolError):
            await lnbits.make_invoice(5_000)


async def test_server_errors_and_timeouts_are_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    lnbits, http = wallet(httpx.MockTransport(handler))
    async with http:
        with pytest.raises(WalletUnavailable):
            await lnbits.balance_msat()
    lnbits, http = wallet(httpx.MockTransport(lambda r: httpx.Response(502, text="bad gw")))
    async with http:
        with pytest.raises(WalletUnavailable):
            await lnbits.balance_msat()


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("timeout", PaymentState.PENDING),
        ("http500", PaymentState.PENDING),
        ("pending520", PaymentState.PENDING),
        ("failed520", PaymentState.FAILED),
        ("success", PaymentState.SUCCEEDED),
    ],
)
async def test_late_or_lost_payment_answers_are_pending(
    outcome: str, expected: PaymentState
) -> None:
    payment_hash, bolt11 = invoice()
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/payments/fee-reserve":
            return httpx.Response(200, json={"fee_reserve": 2_000})
        sent.append(json.loads(request.content)["bolt11"])
        assert request.headers["X-Api-Key"] == "adminkey"
        if outcome == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        if outcome == "http500":
            return httpx.Response(500, text="oops")
        if outcome == "pending520":
            return httpx.Response(520, json={"detail": "in flight", "status": "pending"})
        if outcome == "failed520":
            return httpx.Response(520, json={"detail": "no route", "status": "failed"})
        return httpx.Response(201, json={"payment_hash": payment_hash, "status": "success",
                                         "preimage": "ab" * 32, "fee": -1_000})

    lnbits, http = wallet(httpx.MockTransport(handler))
    async with http:
        result = await lnbits.pay_invoice(bolt11, max_fee_msat=2_000)
    assert sent == [bolt11]
    assert result.state is expected
    assert result.payment_hash == payment_hash
    if expected is PaymentState.SUCCEEDED:
        assert result.preimage == "ab" * 32 and result.fee_msat == 1_000


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_websocket_and_webhook_parsers_never_crash(value: object) -> None:
    text = json.dumps(value)
    for body in (text, json.dumps(text), text.encode()):
        parse_webhook_hash(body)
        parse_ws_message(body)
    parse_ws_message(json.dumps({"payment": value}))
