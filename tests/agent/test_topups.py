"""Top-ups and open invoices: money paid while the agent is down is found by polling the ledger's
open invoices after a restart; expired invoices move nothing; late money becomes balance."""

from collections.abc import Callable
from pathlib import Path

import httpx

from bot.agent.settlements import Applied, SettlementProcessor, payer_message
from bot.wallets.base import Settlement
from bot.wallets.dev import DevWallet
from storage import (
    Database,
    InvoiceKind,
    Ledger,
    PaymentOutcome,
    PaymentVerdict,
    TopupPayment,
    TopupResult,
    TopupState,
)
from tests.agent.money import (
    ASKER,
    FEE_CAP_MSAT,
    NO_SUBSIDY,
    OTHER,
    assert_books_balance,
    invoiced_job,
    lnbits,
    open_ledger,
)
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer


async def test_paid_while_down_is_credited_after_restart_once(
    tmp_path: Path,
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    agent = lnbits(http, lnbits_server, lnbits_new_wallet("agent"))
    payer = lnbits(http, lnbits_server, lnbits_new_wallet("payer", balance_sat=100))
    path = tmp_path / "ledger.db"
    async with open_ledger(path) as ledger:  # the agent makes the invoices, then goes down
        topup = await agent.make_invoice(30_000, description="top-up")
        await ledger.record_topup(ASKER, topup.payment_hash, 30_000, topup.expires_at)
        job_hash, job_bolt11 = await invoiced_job(ledger, agent, "job-down", 12_000, OTHER)
        unpaid = await agent.make_invoice(5_000, description="top-up, never paid")
        await ledger.record_topup(OTHER, unpaid.payment_hash, 5_000, unpaid.expires_at)
    # paid while no processor runs
    assert (await payer.pay_invoice(topup.bolt11, max_fee_msat=FEE_CAP_MSAT)).succeeded
    assert (await payer.pay_invoice(job_bolt11, max_fee_msat=FEE_CAP_MSAT)).succeeded

    told: list[Applied] = []

    async def on_credit(applied: Applied) -> None:
        told.append(applied)

    async with open_ledger(path) as ledger:  # the restart: nobody passes payment hashes
        processor = SettlementProcessor(ledger, on_credit=on_credit)
        applied = await processor.poll(agent)
        assert sorted(a.payment_hash for a in applied) == sorted([topup.payment_hash, job_hash])
        by_hash = {a.payment_hash: a for a in told}
        credited = by_hash[topup.payment_hash]
        assert isinstance(credited.outcome, TopupPayment)
        assert credited.outcome.result is TopupResult.CREDITED
        assert payer_message(credited) == "Top-up received: 30 sats added to your balance."
        paid_job = by_hash[job_hash].outcome
        assert isinstance(paid_job, PaymentOutcome) and paid_job.result is PaymentVerdict.PAID
        assert (await ledger.job("job-down")).state == "paid"
        # the unpaid top-up is still open (not expired yet); the paid ones are not
        [still_open] = await ledger.open_invoices()
        assert (still_open.payment_hash, still_open.kind) == (unpaid.payment_hash,
                                                              InvoiceKind.TOPUP)

        # every repeat — polling again, by hash, a re-delivered settlement — credits nothing
        # more and returns the first outcome (``on_credit`` hears it again: the agent's notice
        # is stored once per payment hash, tests/agent/test_settlements.py)
        assert await processor.poll(agent) == []
        again = await processor.poll(agent, [topup.payment_hash, job_hash])
        assert [a.outcome for a in again] == [credited.outcome, paid_job]
        replay = await SettlementProcessor(ledger).apply(
            Settlement(topup.payment_hash, 30_000, None, 0)
        )
        assert replay is not None and replay.outcome == credited.outcome
        assert len(told) == 4
        assert (await ledger.balance(ASKER)).available_msat == 30_000
        assert (await ledger.balance(OTHER)).available_msat == 0
        topup_record = await ledger.topup(topup.payment_hash)
        assert (topup_record.state, topup_record.paid_msat) == (TopupState.PAID, 30_000)
        await assert_books_balance(ledger)


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


async def test_poll_expires_what_can_no_longer_be_paid_and_late_money_is_balance(
    tmp_path: Path,
) -> None:
    clock = Clock(1_800_000_000)
    wallet = DevWallet(clock=clock)
    db = await Database.open(tmp_path / "ledger.db")
    try:
        ledger = Ledger(db, NO_SUBSIDY, clock=clock)
        processor = SettlementProcessor(ledger, expiry_grace_s=60)
        short = await wallet.make_invoice(4_000, expiry_s=100)
        await ledger.record_topup(ASKER, short.payment_hash, 4_000, short.expires_at)
        job_hash, _ = await invoiced_job(ledger, wallet, "job-x", 7_000, expiry_s=100)
        skewed = await wallet.make_invoice(2_000, expiry_s=1_000)
        # the ledger's expiry is earlier than the wallet's (another clock, a shorter quote)
        await ledger.record_topup(OTHER, skewed.payment_hash, 2_000, clock.now + 100)
        long = await wallet.make_invoice(9_000, expiry_s=1_000)
        await ledger.record_topup(OTHER, long.payment_hash, 9_000, long.expires_at)
        foreign = await DevWallet(clock=clock).make_invoice(1_000, expiry_s=100)  # not ours
        await ledger.record_topup(OTHER, foreign.payment_hash, 1_000, foreign.expires_at)

        clock.now += 130  # past expiry: the wallet says EXPIRED for two; skewed is in its grace
        assert await processor.poll(wallet) == []
        assert (await ledger.topup(short.payment_hash)).state is TopupState.EXPIRED
        assert (await ledger.job("job-x")).state == "expired"
        open_now = {i.payment_hash for i in await ledger.open_invoices()}
        assert open_now == {skewed.payment_hash, long.payment_hash, foreign.payment_hash}
        clock.now += 60  # past the grace too: expired although the wallet says pending (or
        assert await processor.poll(wallet) == []  # does not know the invoice at all)
        assert [i.payment_hash for i in await ledger.open_invoices()] == [long.payment_hash]
        assert (await ledger.topup(foreign.payment_hash)).state is TopupState.EXPIRED
        assert (await ledger.balance(ASKER)).available_msat == 0  # expiring moved nothing
        await assert_books_balance(ledger)

        # paid anyway: the money becomes balance, and the payer is told so
        late_topup = await processor.apply(wallet.settle(short.payment_hash))
        assert late_topup is not None and isinstance(late_topup.outcome, TopupPayment)
        assert late_topup.outcome.result is TopupResult.LATE
        message = payer_message(late_topup)
        assert message is not None and "not lost" in message and "4 sats" in message
        late_job = await processor.apply(wallet.settle(job_hash))
        assert late_job is not None and isinstance(late_job.outcome, PaymentOutcome)
        assert late_job.outcome.result is PaymentVerdict.LATE
        assert (await ledger.balance(ASKER)).available_msat == 11_000
        late_skewed = await processor.poll(wallet, [skewed.payment_hash])
        assert late_skewed == []  # not settled: nothing
        wallet.settle(skewed.payment_hash)
        [late_skewed_applied] = await processor.poll(wallet, [skewed.payment_hash])
        assert late_skewed_applied.credited_balance_msat == 2_000
        assert (await ledger.balance(OTHER)).available_msat == 2_000
        await assert_books_balance(ledger)
    finally:
        await db.close()
