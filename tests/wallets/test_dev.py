"""The dev wallet: real bolt11 strings, settles on command, says it is not real money."""

import asyncio
import hashlib

import pytest

from bot.wallets.base import (
    InvoiceState,
    PaymentState,
    SettlementSource,
    Wallet,
    WalletRefused,
)
from bot.wallets.bolt11 import decode_invoice
from bot.wallets.dev import (
    ALLOW_DEV_WALLET_ENV,
    NOT_REAL_MONEY,
    DevNetwork,
    DevWallet,
    dev_wallet_allowed,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_is_a_wallet_and_a_settlement_source() -> None:
    wallet = DevWallet()
    assert isinstance(wallet, Wallet)
    assert isinstance(wallet, SettlementSource)
    assert wallet.is_real_money is False
    assert wallet.network == "bcrt"


async def test_invoice_is_well_formed_and_says_not_real_money() -> None:
    wallet = DevWallet()
    invoice = await wallet.make_invoice(5_000, description="hello", expiry_s=120)
    decoded = decode_invoice(invoice.bolt11)
    assert invoice.bolt11.startswith("lnbcrt")
    assert decoded.amount_msat == 5_000
    assert decoded.payment_hash == invoice.payment_hash
    assert decoded.description is not None and NOT_REAL_MONEY in decoded.description
    assert decoded.expiry_s == 120
    assert invoice.expires_at == invoice.created_at + 120


async def test_settle_on_command_with_preimage_and_stream() -> None:
    wallet = DevWallet()
    stream = wallet.settlements()
    invoice = await wallet.make_invoice(5_000, description="q")
    assert (await wallet.lookup_invoice(invoice.payment_hash)).state is InvoiceState.PENDING
    wallet.settle(invoice.payment_hash, amount_msat=6_000)  # overpaid
    got = await asyncio.wait_for(anext(stream), 5)
    assert got.payment_hash == invoice.payment_hash
    assert got.amount_msat == 6_000
    assert got.preimage is not None
    assert hashlib.sha256(bytes.fromhex(got.preimage)).hexdigest() == invoice.payment_hash
    status = await wallet.lookup_invoice(invoice.payment_hash)
    assert status.state is InvoiceState.SETTLED
    assert status.amount_msat == 6_000
    wallet.settle(invoice.payment_hash)  # a repeat delivers the same settlement
    assert await asyncio.wait_for(anext(stream), 5) == got
    assert await wallet.balance_msat() == 6_000


async def test_expires() -> None:
    clock = Clock()
    wallet = DevWallet(clock=clock)
    invoice = await wallet.make_invoice(1_000, expiry_s=60)
    clock.now += 61
    assert (await wallet.lookup_invoice(invoice.payment_hash)).state is InvoiceState.EXPIRED


async def test_pays_another_dev_wallet_once() -> None:
    net = DevNetwork()
    agent = DevWallet(dev_network=net, balance_msat=10_000)
    asker = DevWallet(dev_network=net)
    invoice = await asker.make_invoice(4_000, description="refund")
    assert (await agent.lookup_payment(invoice.payment_hash)).state is PaymentState.NOT_FOUND
    paid = await agent.pay_invoice(invoice.bolt11, max_fee_msat=0)
    assert paid.state is PaymentState.SUCCEEDED and paid.fee_msat == 0
    assert (await asker.lookup_invoice(invoice.payment_hash)).state is InvoiceState.SETTLED
    again = await agent.pay_invoice(invoice.bolt11, max_fee_msat=0)
    assert again.state is PaymentState.FAILED
    assert again.reason is not None and NOT_REAL_MONEY in again.reason
    assert await agent.balance_msat() == 6_000
    assert (await agent.lookup_payment(invoice.payment_hash)).state is PaymentState.SUCCEEDED


async def test_refuses_what_it_cannot_pay() -> None:
    net = DevNetwork()
    agent = DevWallet(dev_network=net, balance_msat=1_000)
    asker = DevWallet(dev_network=net)
    outsider = DevWallet(network="bc")
    too_big = await asker.make_invoice(5_000)
    foreign = await outsider.make_invoice(500)
    for bolt11 in (too_big.bolt11, foreign.bolt11):
        result = await agent.pay_invoice(bolt11, max_fee_msat=0)
        assert result.state is PaymentState.FAILED
        assert result.reason is not None and NOT_REAL_MONEY in result.reason
    assert await agent.balance_msat() == 1_000


async def test_bad_requests_are_typed() -> None:
    wallet = DevWallet()
    for amount in (0, -1):
        with pytest.raises(WalletRefused):
            await wallet.make_invoice(amount)
    with pytest.raises(WalletRefused):
        await wallet.make_invoice(1, description_hash=b"short")
    with pytest.raises(WalletRefused):
        await wallet.lookup_invoice("00" * 32)


def test_allowed_only_by_the_flag_or_the_environment() -> None:
    assert not dev_wallet_allowed(False, {})
    assert dev_wallet_allowed(True, {})
    assert dev_wallet_allowed(False, {ALLOW_DEV_WALLET_ENV: "1"})
    assert not dev_wallet_allowed(False, {ALLOW_DEV_WALLET_ENV: "0"})
