"""The LNbits backend against a real LNbits server (FakeWallet)."""

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable

import httpx
import pytest

from bot.wallets.base import (
    InvoiceState,
    PaymentState,
    Settlement,
    SettlementSource,
    Wallet,
    WalletRefused,
    WalletUnavailable,
)
from bot.wallets.bolt11 import decode_invoice
from bot.wallets.dev import DevWallet
from bot.wallets.lnbits import LnbitsWallet, parse_webhook_hash, parse_ws_message
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer

FEE_CAP_MSAT = 10_000


def backend(
    http: httpx.AsyncClient, server: LnbitsServer, account: LnbitsAccount, **kw: object
) -> LnbitsWallet:
    return LnbitsWallet(
        http, url=server.url, invoice_key=account.inkey, admin_key=account.adminkey,
        **kw,  # type: ignore[arg-type]
    )


async def test_invoice_paid_by_a_second_wallet(
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    agent = backend(http, lnbits_server, lnbits_new_wallet("agent"))
    payer = backend(http, lnbits_server, lnbits_new_wallet("payer", balance_sat=1_000))
    assert isinstance(agent, Wallet) and isinstance(agent, SettlementSource)
    invoice = await agent.make_invoice(21_000, description="a question", expiry_s=300)
    decoded = decode_invoice(invoice.bolt11)
    assert decoded.amount_msat == 21_000 and decoded.payment_hash == invoice.payment_hash
    assert invoice.expires_at - invoice.created_at == 300
    assert (await agent.lookup_invoice(invoice.payment_hash)).state is InvoiceState.PENDING

    paid = await payer.pay_invoice(invoice.bolt11, max_fee_msat=FEE_CAP_MSAT)
    assert paid.state is PaymentState.SUCCEEDED
    assert paid.preimage is not None
    assert hashlib.sha256(bytes.fromhex(paid.preimage)).hexdigest() == invoice.payment_hash

    status = await agent.lookup_invoice(invoice.payment_hash)
    assert status.state is InvoiceState.SETTLED
    assert status.amount_msat == 21_000
    assert status.preimage == paid.preimage
    assert await agent.balance_msat() == 21_000
    assert (await payer.lookup_payment(invoice.payment_hash)).state is PaymentState.SUCCEEDED

    again = await payer.pay_invoice(invoice.bolt11, max_fee_msat=FEE_CAP_MSAT)
    assert again.state is PaymentState.FAILED
    assert await payer.balance_msat() == 1_000_000 - 21_000


async def test_description_hash_invoice(
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    agent = backend(http, lnbits_server, lnbits_new_wallet("agent"))
    digest = hashlib.sha256(b'{"kind":9734}').digest()
    invoice = await agent.make_invoice(5_000, description_hash=digest)
    assert decode_invoice(invoice.bolt11).description_hash == digest.hex()


async def test_expired_invoice_is_reported_expired(
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    account = lnbits_new_wallet("agent")
    agent = backend(http, lnbits_server, account)
    invoice = await agent.make_invoice(1_000, expiry_s=60)
    later = backend(http, lnbits_server, account, clock=lambda: time.time() + 120)
    assert (await later.lookup_invoice(invoice.payment_hash)).state is InvoiceState.EXPIRED


async def test_refusals_are_values_and_move_nothing(
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    agent = backend(http, lnbits_server, lnbits_new_wallet("agent", balance_sat=100))
    asker = backend(http, lnbits_server, lnbits_new_wallet("asker"))
    big = await asker.make_invoice(500_000)
    small = await asker.make_invoice(50_000)

    broke = await agent.pay_invoice(big.bolt11, max_fee_msat=FEE_CAP_MSAT)
    assert broke.state is PaymentState.FAILED
    capped = await agent.pay_invoice(small.bolt11, max_fee_msat=0)
    assert capped.state is PaymentState.FAILED and "cap" in (capped.reason or "")
    regtest = await DevWallet().make_invoice(1_000)
    wrong_net = await agent.pay_invoice(regtest.bolt11, max_fee_msat=FEE_CAP_MSAT)
    assert wrong_net.state is PaymentState.FAILED

    assert await agent.balance_msat() == 100_000
    assert (await asker.lookup_invoice(small.payment_hash)).state is InvoiceState.PENDING
    assert (await agent.lookup_payment(small.payment_hash)).state is PaymentState.NOT_FOUND
    assert (await agent.lookup_payment("ab" * 32)).state is PaymentState.NOT_FOUND

    with pytest.raises(WalletRefused) as info:
        await agent.make_invoice(1_500)
    assert info.value.code == "whole_sats_only"
    with pytest.raises(WalletRefused):
        await agent.lookup_invoice("not-a-hash")
    with pytest.raises(WalletRefused):
        await agent.lookup_invoice("cd" * 32)


async def test_bad_key_and_unreachable_server(
    http: httpx.AsyncClient, lnbits_server: LnbitsServer
) -> None:
    wrong = LnbitsWallet(http, url=lnbits_server.url, invoice_key="0" * 32)
    with pytest.raises(WalletRefused) as info:
        await wrong.make_invoice(1_000)
    assert "0" * 32 not in str(info.value)
    gone = LnbitsWallet(http, url="http://127.0.0.1:9", invoice_key="secretkey")
    with pytest.raises(WalletUnavailable) as down:
        await gone.balance_msat()
    assert "secretkey" not in str(down.value)


async def test_websocket_settlements_with_repeats(
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    account = lnbits_new_wallet("agent")
    agent = backend(http, lnbits_server, account)
    payer = backend(http, lnbits_server, lnbits_new_wallet("payer", balance_sat=100))
    stream = agent.settlements()
    got: list[Settlement] = []

    async def collect() -> None:
        async for settlement in stream:
            got.append(settlement)

    task = asyncio.create_task(collect())
    try:
        invoice = await agent.make_invoice(7_000)
        # the websocket connects in the background: pay once it is up
        await asyncio.wait_for(agent.websocket_connected.wait(), 60)
        paid = await payer.pay_invoice(invoice.bolt11, max_fee_msat=FEE_CAP_MSAT)
        assert paid.succeeded
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
    assert got, "no settlement arrived over the websocket"
    assert {s.payment_hash for s in got} == {invoice.payment_hash}
    assert {s.amount_msat for s in got} == {7_000}
    assert caplog.records, "debug logging was not captured"
    assert account.inkey not in caplog.text and account.adminkey not in caplog.text


async def test_webhook_is_verified_against_lnbits(
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    bodies: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode().split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        bodies.append(await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        account = lnbits_new_wallet("agent")
        agent = backend(http, lnbits_server, account,
                        webhook_url=f"http://127.0.0.1:{port}/hook")
        payer = backend(http, lnbits_server, lnbits_new_wallet("payer", balance_sat=100))
        invoice = await agent.make_invoice(3_000)
        unpaid = await agent.make_invoice(4_000)
        assert (await payer.pay_invoice(invoice.bolt11, max_fee_msat=FEE_CAP_MSAT)).succeeded
        for _ in range(100):
            if bodies:
                break
            await asyncio.sleep(0.1)
    finally:
        server.close()
    assert bodies, "LNbits sent no webhook"
    for body in bodies:  # repeats name the same payment
        assert parse_webhook_hash(body) == invoice.payment_hash
        settlement = await agent.settlement_from_webhook(body)
        assert settlement is not None and settlement.amount_msat == 3_000
    forged = json.dumps({"payment_hash": unpaid.payment_hash, "amount": 4000}).encode()
    assert await agent.settlement_from_webhook(forged) is None
    assert await agent.settlement_from_webhook(b"not json") is None


def test_ws_message_parsing_ignores_junk() -> None:
    assert parse_ws_message("[]") is None
    assert parse_ws_message("{") is None
    # found by the fuzz suite on the code before issue 12: RecursionError escaped both parsers
    deep = '{"payment_hash":' + "[" * 2000 + "]" * 2000 + "}"
    assert parse_ws_message(deep) is None and parse_webhook_hash(deep) is None
    assert parse_webhook_hash('{"payment_hash":"' + "a" * 64 + '","n":' + "9" * 5000 + "}") \
        is None
    assert parse_ws_message('{"payment": {"status": "success", "amount": -5,'
                            ' "payment_hash": "' + "a" * 64 + '"}}') is None
    ok = parse_ws_message('{"payment": {"status": "success", "amount": 5000,'
                          ' "payment_hash": "' + "a" * 64 + '"}}')
    assert ok is not None and ok.amount_msat == 5_000
