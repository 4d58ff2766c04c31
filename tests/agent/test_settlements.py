"""Settlements → ledger: exactly once per payment hash; late, over and repeated money → balance;
the payer told once per payment hash, a crash between the ledger write and the notice included."""

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx

from bot.agent.settlements import (
    Applied,
    SettlementProcessor,
    notice_key,
    payer_message,
    payment_key,
)
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.config import RelayConfig
from bot.wallets.base import Settlement
from bot.wallets.dev import DevNetwork, DevWallet
from storage import (
    Database,
    Ledger,
    Limits,
    PaymentVerdict,
    Serve,
    TopupPayment,
    TopupResult,
    check,
)
from tests.agent.money import (
    ASKER,
    FEE_CAP_MSAT,
    assert_books_balance,
    invoiced_job,
    lnbits,
    open_ledger,
)
from tests.agent.test_agent import Asker, start_agent
from tests.fixtures.ai_server import AiTestServer
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
        processor = SettlementProcessor(ledger, on_credit=on_credit)
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
        # on_credit hears each delivery (LNbits repeats), each with the first outcome
        assert {a.payment_hash for a in told} == {payment_hash}
        assert told[0].outcome is not None and told[0].outcome.result is PaymentVerdict.PAID
        assert all(a.outcome == told[0].outcome for a in told)
        assert payer_message(told[0]) is None
        # polling (the fallback) and a replay after the fact change nothing
        again = await processor.poll(agent, [payment_hash])
        assert [a.outcome for a in again] == [told[0].outcome]
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
        processor = SettlementProcessor(ledger)
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
        processor = SettlementProcessor(ledger)
        payment_hash, _ = await invoiced_job(ledger, agent, "job-over", 5_000)
        settlement = agent.settle(payment_hash, amount_msat=7_500)
        first = await processor.apply(settlement)
        repeat = await processor.apply(settlement)
        assert first is not None and repeat is not None
        assert first.outcome is not None and first.outcome.result is PaymentVerdict.OVERPAID
        assert repeat.outcome == first.outcome
        assert (await ledger.balance(ASKER)).available_msat == 2_500
        message = payer_message(first)
        assert message is not None and "2.5 sats" in message
        await assert_books_balance(ledger)


async def test_topups_and_unknown_payments(tmp_path: Path) -> None:
    wallet = DevWallet()
    async with open_ledger(tmp_path / "ledger.db") as ledger:
        processor = SettlementProcessor(ledger)
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
        applied = Applied("ef" * 32, ASKER, 4_500, outcome, outcome.credited_balance_msat)
        message = payer_message(applied)
        assert message is not None and "not lost" in message and "4.5 sats" in message
        assert (await ledger.balance(ASKER)).available_msat == 4_500
        await assert_books_balance(ledger)
    finally:
        await db.close()


async def test_a_repeat_across_a_restart_moves_nothing(tmp_path: Path) -> None:
    agent = DevWallet()
    told: list[Applied] = []

    async def on_credit(applied: Applied) -> None:
        told.append(applied)

    path = tmp_path / "ledger.db"
    async with open_ledger(path) as ledger:
        payment_hash, _ = await invoiced_job(ledger, agent, "job-restart", 4_000)
        settlement = agent.settle(payment_hash)
        await SettlementProcessor(ledger, on_credit=on_credit).apply(settlement)
    async with open_ledger(path) as ledger:
        processor = SettlementProcessor(ledger, on_credit=on_credit)
        again = await processor.apply(settlement)
        assert again is not None and again.outcome == told[0].outcome
        assert [a.payment_hash for a in told] == [payment_hash, payment_hash]
        job = await ledger.job("job-restart")
        assert job.state == "paid" and job.paid_msat == 4_000
        assert (await ledger.balance(ASKER)).available_msat == 0
        await assert_books_balance(ledger)


async def test_killed_after_the_ledger_write_the_payment_is_found_again_without_a_repeat(
    tmp_path: Path,
) -> None:
    """The process dies right after the ledger counted payments, before the notices were
    stored, and nothing delivers them again (the wallet's stream does not replay, the start-up
    poll sees no open invoice): ``credited_since`` finds every payment that became a balance,
    with the outcome the ledger stored — not the ones that only paid their job."""
    agent = DevWallet()
    path = tmp_path / "ledger.db"
    async with open_ledger(path) as ledger:
        since = ledger.clock()
        over_hash, _ = await invoiced_job(ledger, agent, "job-over", 4_000)
        paid_hash, _ = await invoiced_job(ledger, agent, "job-paid", 3_000)
        topup = await agent.make_invoice(5_000, description="topup")
        await ledger.record_topup(ASKER, topup.payment_hash, 5_000, topup.expires_at)
        # what apply() and the zap intake write, then nothing more
        await ledger.confirm_payment(over_hash, 6_000, payment_key(over_hash))
        await ledger.confirm_payment(paid_hash, 3_000, payment_key(paid_hash))
        await ledger.confirm_payment("job-paid", 2_000, "zap:" + "ab" * 32)
        await ledger.confirm_topup(topup.payment_hash, 5_000, payment_key(topup.payment_hash))
    async with open_ledger(path) as ledger:
        swept = await SettlementProcessor(ledger).credited_since(since)
        found = [applied for _, applied in swept]
        assert [(a.payment_hash, a.pubkey, a.amount_msat, a.credited_balance_msat)
                for a in found] == [(over_hash, ASKER, 6_000, 2_000),
                                    ("ab" * 32, ASKER, 2_000, 2_000),
                                    (topup.payment_hash, ASKER, 5_000, 5_000)]
        verdicts = [a.outcome.result for a in found]
        assert verdicts == [PaymentVerdict.OVERPAID, PaymentVerdict.DUPLICATE,
                            TopupResult.CREDITED]
        assert [payer_message(a) is not None for a in found] == [True, True, True]
        # payments counted before ``since``, or up to a transfer already swept, are not read
        assert await SettlementProcessor(ledger).credited_since(ledger.clock() + 1) == []
        later = await SettlementProcessor(ledger).credited_since(since, swept[0][0])
        assert [a.payment_hash for _, a in later] == ["ab" * 32, topup.payment_hash]
        # the settlement, if it does come again, finds the same outcome and moves nothing
        again = await SettlementProcessor(ledger).apply(agent.settle(over_hash, amount_msat=6_000))
        assert again is not None and again.outcome == found[0].outcome
        assert (await ledger.balance(ASKER)).available_msat == 9_000
        await assert_books_balance(ledger)


async def test_the_agent_tells_a_payment_counted_before_a_crash_once(
    tmp_path: Path, relay_url: str, ai_server: AiTestServer
) -> None:
    """In one process, on a real SQLite file left exactly as a SIGKILL between the ledger write
    and the notice leaves it (a late payment counted, no notice stored, nothing to re-deliver
    it): the agent's start-up sweep stores and sends the notice; a repeat of the settlement and
    another sweep send nothing more. (End to end, through ``timmy run``:
    tests/e2e/test_money_paths.py.)"""
    wallet = DevWallet()
    asker_keys = Keys.generate()
    asker_pk = asker_keys.public_hex
    db = await Database.open(tmp_path / "agent.sqlite3")
    try:
        ledger = Ledger(db, Limits(daily_free_msat=0, daily_free_jobs=0))
        payment_hash, _ = await invoiced_job(ledger, wallet, "job-late", 8_000, asker_pk)
        await ledger.expire_job("job-late")
        late = await ledger.confirm_payment(payment_hash, 8_000, payment_key(payment_hash))
        assert late.result is PaymentVerdict.LATE
    finally:
        await db.close()
    async with start_agent(tmp_path, relay_url, ai_server) as running:
        agent = running.agent
        async with RelayPool([RelayConfig(relay_url)], keys=asker_keys) as pool:
            asker = Asker(pool, asker_keys, agent.parts.keys)
            await asker.start()
            await pool.wait_connected(5)
            told = await asker.next_reply(0)
            assert "after the quote expired" in told and "8 sats are now your balance" in told
            stored = await agent.outbox.message(notice_key(payment_hash))
            assert stored and stored[0].recipient == asker_pk
            # the wallet delivers the settlement after all, the sweep runs again: nothing new
            again = await agent.settlements.apply(Settlement(payment_hash, 8_000, None, 0))
            assert again is not None and again.outcome == late
            await agent.sweep_notices()
            await asyncio.sleep(1.0)
            assert asker.replies == [told]
            # the same stored events (their send state may have moved on meanwhile)
            after = await agent.outbox.message(notice_key(payment_hash))
            assert [i.event_id for i in after] == [i.event_id for i in stored]
            # while it runs: a payment counted whose notice was not stored (storing it failed)
            # is told by the next sweep, once
            later = await agent.ledger.confirm_payment("job-late", 3_000, "zap:" + "cd" * 32)
            assert later.result is PaymentVerdict.LATE
            await agent.sweep_notices()
            again_told = await asker.next_reply(1)
            assert "after the quote expired" in again_told
            assert "3 sats are now your balance" in again_told
            await agent.sweep_notices()
            await asyncio.sleep(1.0)
            assert asker.replies == [told, again_told]
        assert (await agent.ledger.balance(asker_pk)).available_msat == 11_000
        assert (await check(running.db)).ok
