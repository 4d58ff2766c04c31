"""Settlements → ledger: exactly once per payment hash; late, over and repeated money → balance."""

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx

from bot.agent.settlements import Applied, SettlementProcessor, payer_message, payment_key
from bot.wallets.base import Settlement
from bot.wallets.dev import DevNetwork, DevWallet
from storage import Database, Intake, Ledger, Limits, PaymentVerdict, Serve, TopupPayment
from tests.agent.money import (
    ASKER,
    FEE_CAP_MSAT,
    assert_books_balance,
    invoiced_job,
    lnbits,
    open_ledger,
)
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer


async def test_lnbits_websocket_settlement_pays_the_job_once(
    tmp_path: Path,
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    agent = lnbits(http, lnbits_server, lnbits_new_wallet("agent"))
    payer = lnbits(http, lnbits_server, lnbits_new_wallet("payer", balance_sat=100))
    told: list[Applied] = []

    async def on_credit(applied: Applied) -> None:
        told.append(applied)

    async with open_ledger(tmp_path / "ledger.db") as ledger:
        processor = SettlementProcessor(ledger, Intake(ledger.db), on_credit=on_credit)
        payment_hash, bolt11 = await invoiced_job(ledger, agent, "job-ws", 21_000)
        runner = asyncio.create_task(processor.run(agent))
        try:
            await asyncio.wait_for(agent.websocket_connected.wait(), 60)
            assert (await payer.pay_invoice(bolt11, max_fee_msat=FEE_CAP_MSAT)).succeeded
            for _ in range(100):
                if (await ledger.job("job-ws")).state == "paid" and told:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # LNbits repeats the message: let the repeat land too
        finally:
            runner.cancel()
        job = await ledger.job("job-ws")
        assert job.state == "paid" and job.paid_msat == 21_000
        assert [a.payment_hash for a in told] == [payment_hash]
        assert told[0].outcome is not None and told[0].outcome.result is PaymentVerdict.PAID
        assert payer_message(told[0]) is None
        # polling (the fallback) and a replay after the fact change nothing
        again = await processor.poll(agent, [payment_hash])
        assert [a.first_time for a in again] == [False]
        assert (await ledger.balance(ASKER)).available_msat == 0
        await assert_books_balance(ledger)


async def test_late_payment_becomes_balance_and_says_so(
    tmp_path: Path,
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    agent = lnbits(http, lnbits_server, lnbits_new_wallet("agent"))
    payer = lnbits(http, lnbits_server, lnbits_new_wallet("payer", balance_sat=100))
    async with open_ledger(tmp_path / "ledger.db") as ledger:
        processor = SettlementProcessor(ledger, Intake(ledger.db))
        payment_hash, bolt11 = await invoiced_job(ledger, agent, "job-late", 8_000)
        await ledger.expire_job("job-late")
        assert (await payer.pay_invoice(bolt11, max_fee_msat=FEE_CAP_MSAT)).succeeded
        [applied] = await processor.poll(agent, [payment_hash])
        assert applied.outcome is not None
        assert applied.outcome.result is PaymentVerdict.LATE
        assert applied.credited_balance_msat == 8_000
        message = payer_message(applied)
        assert message is not None and "not lost" in message and "8 sats" in message
        assert (await ledger.balance(ASKER)).available_msat == 8_000
        assert (await ledger.job("job-late")).state == "expired"
        await assert_books_balance(ledger)


async def test_overpaid_and_repeated_settlements_with_the_dev_wallet(tmp_path: Path) -> None:
    agent = DevWallet(dev_network=DevNetwork())
    async with open_ledger(tmp_path / "ledger.db") as ledger:
        processor = SettlementProcessor(ledger, Intake(ledger.db))
        payment_hash, _ = await invoiced_job(ledger, agent, "job-over", 5_000)
        settlement = agent.settle(payment_hash, amount_msat=7_500)
        first = await processor.apply(settlement)
        repeat = await processor.apply(settlement)
        assert first is not None and repeat is not None
        assert first.first_time and not repeat.first_time
        assert first.outcome is not None and first.outcome.result is PaymentVerdict.OVERPAID
        assert repeat.outcome == first.outcome
        assert (await ledger.balance(ASKER)).available_msat == 2_500
        message = payer_message(first)
        assert message is not None and "2.5 sats" in message
        await assert_books_balance(ledger)


async def test_topups_and_unknown_payments(tmp_path: Path) -> None:
    wallet = DevWallet()
    async with open_ledger(tmp_path / "ledger.db") as ledger:
        processor = SettlementProcessor(ledger, Intake(ledger.db))
        topup = await wallet.make_invoice(10_000, description="topup")
        await ledger.record_topup(ASKER, topup.payment_hash, 10_000, topup.expires_at)
        stray = await wallet.make_invoice(3_000, description="nobody's")
        for _ in range(3):
            applied = await processor.apply(wallet.settle(topup.payment_hash))
            assert applied is not None and isinstance(applied.outcome, TopupPayment)
            assert applied.pubkey == ASKER and applied.credited_balance_msat == 10_000
        assert await processor.apply(wallet.settle(stray.payment_hash)) is None
        assert await processor.apply(Settlement("cd" * 32, 0, None, 0)) is None
        assert (await ledger.balance(ASKER)).available_msat == 10_000
        await assert_books_balance(ledger)


async def test_a_payment_for_a_job_that_takes_none_is_balance_and_says_so(
    tmp_path: Path,
) -> None:
    db = await Database.open(tmp_path / "ledger.db")
    try:
        ledger = Ledger(db, Limits(daily_free_msat=100_000, daily_free_jobs=5))
        await ledger.credit_pool(50_000, "zap:fund")
        decision = await ledger.decide("job-free", ASKER, 9_000)
        assert decision.serve is Serve.FREE
        outcome = await ledger.confirm_payment("job-free", 4_500, "zap:paid-anyway")
        assert outcome.result is PaymentVerdict.NOT_DUE
        applied = Applied("ef" * 32, ASKER, 4_500, outcome, outcome.credited_balance_msat, True)
        message = payer_message(applied)
        assert message is not None and "not lost" in message and "4.5 sats" in message
        assert (await ledger.balance(ASKER)).available_msat == 4_500
        await assert_books_balance(ledger)
    finally:
        await db.close()


async def test_exactly_once_across_a_restart(tmp_path: Path) -> None:
    agent = DevWallet()
    told: list[str] = []

    async def on_credit(applied: Applied) -> None:
        told.append(applied.payment_hash)

    path = tmp_path / "ledger.db"
    async with open_ledger(path) as ledger:
        payment_hash, _ = await invoiced_job(ledger, agent, "job-restart", 4_000)
        settlement = agent.settle(payment_hash)
        await SettlementProcessor(ledger, Intake(ledger.db), on_credit=on_credit).apply(settlement)
    async with open_ledger(path) as ledger:
        processor = SettlementProcessor(ledger, Intake(ledger.db), on_credit=on_credit)
        again = await processor.apply(settlement)
        assert again is not None and not again.first_time
        assert told == [payment_hash]
        job = await ledger.job("job-restart")
        assert job.state == "paid" and job.paid_msat == 4_000
        assert (await ledger.balance(ASKER)).available_msat == 0
        await assert_books_balance(ledger)


async def test_killed_after_the_ledger_write_the_payer_is_told_once_after_restart(
    tmp_path: Path,
) -> None:
    """The process dies right after the ledger counted the payment, before it claimed the
    notification: after the restart the repeat counts nothing again and tells the payer once."""
    agent = DevWallet()
    told: list[str] = []

    async def on_credit(applied: Applied) -> None:
        told.append(applied.payment_hash)

    path = tmp_path / "ledger.db"
    async with open_ledger(path) as ledger:
        payment_hash, _ = await invoiced_job(ledger, agent, "job-killed", 4_000)
        settlement = agent.settle(payment_hash, amount_msat=6_000)
        # what apply() writes before it claims the notification, then nothing more
        await ledger.confirm_payment(payment_hash, 6_000, payment_key(payment_hash))
    async with open_ledger(path) as ledger:
        processor = SettlementProcessor(ledger, Intake(ledger.db), on_credit=on_credit)
        first = await processor.apply(settlement)
        repeat = await processor.apply(settlement)
        assert first is not None and first.first_time
        assert repeat is not None and not repeat.first_time
        assert told == [payment_hash]
        assert first.outcome.result is PaymentVerdict.OVERPAID
        job = await ledger.job("job-killed")
        assert job.state == "paid" and job.paid_msat == 4_000
        assert (await ledger.balance(ASKER)).available_msat == 2_000
        await assert_books_balance(ledger)
