"""Refunds out through a real LNbits: recorded first, paid once, reconciled after a kill."""

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bot.agent.metrics import Metrics
from bot.agent.payouts import Payouts, PayoutStatus
from bot.agent.settlements import SettlementProcessor
from bot.wallets.base import LnurlError
from bot.wallets.dev import DevWallet
from bot.wallets.lnbits import LnbitsWallet
from bot.wallets.lnurl import LnurlClient
from storage import Intake, Ledger, PayoutState, RefundState
from tests.agent.money import (
    ASKER,
    FEE_CAP_MSAT,
    OTHER,
    assert_books_balance,
    invoiced_job,
    lnbits,
    open_ledger,
)
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer

ROOT = Path(__file__).resolve().parents[2]
async def refund_owed(
    ledger: Ledger, agent: LnbitsWallet, asker: LnbitsWallet, job_id: str, amount_msat: int
) -> None:
    """The asker pays the job's invoice for real, then the work fails: a pending refund."""
    payment_hash, bolt11 = await invoiced_job(ledger, agent, job_id, amount_msat)
    assert (await asker.pay_invoice(bolt11, max_fee_msat=FEE_CAP_MSAT)).succeeded
    assert await SettlementProcessor(ledger).poll(agent, [payment_hash])
    failure = await ledger.fail(job_id, "work failed")
    assert failure.refund_msat == amount_msat


async def test_refund_to_an_invoice_is_paid_once(
    tmp_path: Path,
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    agent = lnbits(http, lnbits_server, lnbits_new_wallet("agent"))
    asker = lnbits(http, lnbits_server, lnbits_new_wallet("asker", balance_sat=100))
    async with open_ledger(tmp_path / "ledger.db") as ledger:
        await refund_owed(ledger, agent, asker, "job-r", 21_000)
        assert await ledger.refunds_owed() == (1, 21_000)
        metrics = Metrics()
        payouts = Payouts(ledger, agent, metrics=metrics)
        target = await asker.make_invoice(21_000, description="my refund")
        outcome = await payouts.pay_to_invoice("job-r", ASKER, target.bolt11)
        assert outcome.status is PayoutStatus.PAID, outcome
        assert outcome.preimage is not None
        assert (await asker.lookup_invoice(target.payment_hash)).state.value == "settled"
        assert await asker.balance_msat() == 100_000
        job = await ledger.job("job-r")
        assert job.refund_state is RefundState.PAID and job.refund_ref == outcome.preimage
        again = await payouts.pay_to_invoice("job-r", ASKER, target.bolt11)
        assert again.status is PayoutStatus.REJECTED
        assert await payouts.reconcile() == []
        assert await asker.balance_msat() == 100_000
        counted = {result: metrics.registry.get_sample_value("timmy_payouts_total",
                                                             {"result": result})
                   for result in ("paid", "rejected", "failed", "in_flight")}
        assert counted == {"paid": 1, "rejected": 1, "failed": 0, "in_flight": 0}
        assert await ledger.refunds_owed() == (0, 0)
        await assert_books_balance(ledger)


async def test_bad_refund_invoices_are_rejected_and_change_nothing(
    tmp_path: Path,
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    agent = lnbits(http, lnbits_server, lnbits_new_wallet("agent"))
    asker = lnbits(http, lnbits_server, lnbits_new_wallet("asker", balance_sat=100))
    async with open_ledger(tmp_path / "ledger.db") as ledger:
        await refund_owed(ledger, agent, asker, "job-bad", 9_000)
        payouts = Payouts(ledger, agent)
        wrong_amount = await asker.make_invoice(8_000)
        regtest = await DevWallet().make_invoice(9_000)
        good = await asker.make_invoice(9_000)
        cases = [
            ("job-bad", ASKER, wrong_amount.bolt11, "asks 8000"),
            ("job-bad", ASKER, regtest.bolt11, "network"),
            ("job-bad", ASKER, "lnbc1notaninvoice", "decode"),
            ("job-bad", OTHER, good.bolt11, "no such job"),
            ("no-such-job", ASKER, good.bolt11, "no such job"),
        ]
        for job_id, pubkey, bolt11, why in cases:
            outcome = await payouts.pay_to_invoice(job_id, pubkey, bolt11)
            assert outcome.status is PayoutStatus.REJECTED
            assert outcome.reason is not None and why in outcome.reason, outcome.reason
        late = Payouts(ledger, agent, clock=lambda: time.time() + 3_600)
        expired = await late.pay_to_invoice("job-bad", ASKER, good.bolt11)
        assert expired.status is PayoutStatus.REJECTED and "expired" in (expired.reason or "")
        assert (await ledger.pending_refunds(ASKER))[0].state is RefundState.PENDING
        assert await ledger.unfinished_payouts() == []
        assert await asker.balance_msat() == 100_000 - 9_000
        # what stays claimable can be kept as balance instead, once, by its owner only
        assert (await payouts.keep_as_balance("job-bad", OTHER)).status is PayoutStatus.REJECTED
        kept = await payouts.keep_as_balance("job-bad", ASKER)
        assert kept.status is PayoutStatus.PAID and kept.amount_msat == 9_000
        assert (await payouts.keep_as_balance("job-bad", ASKER)).status is PayoutStatus.REJECTED
        assert (await ledger.balance(ASKER)).available_msat == 9_000
        await assert_books_balance(ledger)


async def test_refund_to_a_lightning_address(
    tmp_path: Path,
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    agent = lnbits(http, lnbits_server, lnbits_new_wallet("agent"))
    asker_account = lnbits_new_wallet("asker", balance_sat=100)
    asker = lnbits(http, lnbits_server, asker_account)
    lnurl = LnurlClient(http, insecure_hosts=frozenset({lnbits_server.url[len("http://"):]}))
    async with open_ledger(tmp_path / "ledger.db") as ledger:
        await refund_owed(ledger, agent, asker, "job-addr", 13_000)
        payouts = Payouts(ledger, agent, lnurl=lnurl)
        outcome = await payouts.pay_to_address("job-addr", ASKER,
                                               asker_account.lightning_address)
        assert outcome.status is PayoutStatus.PAID, outcome
        assert await asker.balance_msat() == 100_000
        host = lnbits_server.url[len("http://"):]
        assert (await payouts.pay_to_address("job-addr", ASKER, f"x@{host}")).status is (
            PayoutStatus.REJECTED
        )
        await assert_books_balance(ledger)


async def test_what_is_owed_in_msat_to_a_lightning_address(
    tmp_path: Path,
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    agent = lnbits(http, lnbits_server, lnbits_new_wallet("agent"))
    asker_account = lnbits_new_wallet("asker", balance_sat=100)
    asker = lnbits(http, lnbits_server, asker_account)
    lnurl = LnurlClient(http, insecure_hosts=frozenset({lnbits_server.url[len("http://"):]}))
    async with open_ledger(tmp_path / "ledger.db") as ledger:
        for job_id, actual_msat in (("job-msat", 7_500), ("job-crumb", 20_500)):
            payment_hash, bolt11 = await invoiced_job(ledger, agent, job_id, 21_000)
            assert (await asker.pay_invoice(bolt11, max_fee_msat=FEE_CAP_MSAT)).succeeded
            assert await SettlementProcessor(ledger).poll(agent, [payment_hash])
            await ledger.start(job_id)
            await ledger.settle(job_id, actual_msat)
        assert await asker.balance_msat() == 100_000 - 42_000
        # owed 13 500 and 500 msat: the ledger's refunds are whole sats (what a lightning
        # address can receive), the sub-sat rest became balance at settlement
        owed = [await ledger.job(job_id) for job_id in ("job-msat", "job-crumb")]
        assert [(j.refund_msat, j.refund_state) for j in owed] == [
            (13_000, RefundState.PENDING), (0, RefundState.NONE)]
        assert (await ledger.balance(ASKER)).available_msat == 500 + 500
        payouts = Payouts(ledger, agent, lnurl=lnurl)
        address = asker_account.lightning_address
        with pytest.raises(LnurlError) as exact:  # why: LNbits rounds an msat amount down
            await lnurl.invoice_for_address(address, 13_500, network=agent.network)
        assert exact.value.code == "amount_mismatch"
        outcome = await payouts.pay_to_address("job-msat", ASKER, address)
        assert outcome.status is PayoutStatus.PAID, outcome
        assert (outcome.amount_msat, outcome.kept_as_balance_msat) == (13_000, 0)
        assert await asker.balance_msat() == 100_000 - 42_000 + 13_000
        job = await ledger.job("job-msat")
        assert job.refund_state is RefundState.PAID and job.refund_ref == outcome.preimage
        # less than a sat owed: no refund to claim (it is balance already)
        crumb = await payouts.pay_to_address("job-crumb", ASKER, address)
        assert crumb.status is PayoutStatus.REJECTED
        view = await ledger.balance(ASKER)
        assert (view.available_msat, view.pending_refund_msat) == (1_000, 0)
        assert await payouts.reconcile() == []
        assert (await payouts.pay_to_address("job-msat", ASKER, address)).status is (
            PayoutStatus.REJECTED
        )
        await assert_books_balance(ledger)
    assert await asker.balance_msat() == 100_000 - 42_000 + 13_000


async def test_failed_payout_leaves_the_refund_claimable(
    tmp_path: Path,
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
    lnbits_fund: Callable[[LnbitsAccount, int], None],
) -> None:
    agent_account = lnbits_new_wallet("agent")
    agent = lnbits(http, lnbits_server, agent_account)
    asker = lnbits(http, lnbits_server, lnbits_new_wallet("asker", balance_sat=100))
    async with open_ledger(tmp_path / "ledger.db") as ledger:
        await refund_owed(ledger, agent, asker, "job-fail", 6_000)
        # the operator moved the money away: the agent's wallet cannot pay
        drain = await asker.make_invoice(6_000)
        assert (await agent.pay_invoice(drain.bolt11, max_fee_msat=FEE_CAP_MSAT)).succeeded
        payouts = Payouts(ledger, agent)
        first = await asker.make_invoice(6_000)
        failed = await payouts.pay_to_invoice("job-fail", ASKER, first.bolt11)
        assert failed.status is PayoutStatus.FAILED
        [refund] = await ledger.pending_refunds(ASKER)
        assert refund.state is RefundState.PENDING
        lnbits_fund(agent_account, 50)
        second = await asker.make_invoice(6_000)
        paid = await payouts.pay_to_invoice("job-fail", ASKER, second.bolt11)
        assert paid.status is PayoutStatus.PAID
        assert (await asker.lookup_invoice(first.payment_hash)).state.value == "pending"
        await assert_books_balance(ledger)


async def test_concurrent_claims_from_two_processes_pay_once(
    tmp_path: Path,
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    agent = lnbits(http, lnbits_server, lnbits_new_wallet("agent"))
    asker = lnbits(http, lnbits_server, lnbits_new_wallet("asker", balance_sat=100))
    path = tmp_path / "ledger.db"
    async with open_ledger(path) as one, open_ledger(path) as two:  # two writers, one file
        await refund_owed(one, agent, asker, "job-race", 11_000)
        same = await asker.make_invoice(11_000)
        other = await asker.make_invoice(11_000)
        outcomes = await asyncio.gather(
            Payouts(one, agent).pay_to_invoice("job-race", ASKER, same.bolt11),
            Payouts(two, agent).pay_to_invoice("job-race", ASKER, same.bolt11),
            Payouts(two, agent).pay_to_invoice("job-race", ASKER, other.bolt11),
            Payouts(one, agent).keep_as_balance("job-race", ASKER),
        )
        statuses = sorted(o.status.value for o in outcomes)
        assert statuses == ["paid", "rejected", "rejected", "rejected"], outcomes
        assert await Payouts(one, agent).reconcile() == []
        await assert_books_balance(one)
        paid_to_balance = (await one.balance(ASKER)).available_msat
    assert await asker.balance_msat() + paid_to_balance == 100_000


@pytest.mark.parametrize("stage", ["recorded", "sent"])
async def test_killed_mid_payout_pays_exactly_once_after_restart(
    stage: str,
    tmp_path: Path,
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    agent_account = lnbits_new_wallet("agent")
    agent = lnbits(http, lnbits_server, agent_account)
    asker = lnbits(http, lnbits_server, lnbits_new_wallet("asker", balance_sat=100))
    path = tmp_path / "ledger.db"
    async with open_ledger(path) as ledger:
        await refund_owed(ledger, agent, asker, "job-kill", 17_000)
    target = await asker.make_invoice(17_000, description="refund")
    env = {
        **os.environ,
        "CRASH_DB": str(path),
        "CRASH_URL": lnbits_server.url,
        "CRASH_INKEY": agent_account.inkey,
        "CRASH_ADMINKEY": agent_account.adminkey,
        "CRASH_JOB": "job-kill",
        "CRASH_PUBKEY": ASKER,
        "CRASH_BOLT11": target.bolt11,
    }
    child = subprocess.run(
        [sys.executable, "-m", "tests.agent.payout_crash_child", stage],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert child.returncode == -9, child.stdout + child.stderr
    assert child.stdout.strip() == stage
    expected_before = 100_000 - 17_000 + (17_000 if stage == "sent" else 0)
    assert await asker.balance_msat() == expected_before

    async with open_ledger(path) as ledger:  # the restart
        [unfinished] = await ledger.unfinished_payouts()
        assert unfinished.state is PayoutState.SENDING
        payouts = Payouts(ledger, agent)
        assert await payouts.reconcile() == []  # leased to the killed process: not sent here
        assert len(await Intake(ledger.db).free_dead_leases()) == 1  # as a restart does
        [outcome] = await payouts.reconcile()
        assert outcome.status is PayoutStatus.PAID, outcome
        assert await payouts.reconcile() == []
        job = await ledger.job("job-kill")
        assert job.refund_state is RefundState.PAID
        # a claim of the same refund now is refused; the asker was paid exactly once
        retry = await payouts.pay_to_invoice("job-kill", ASKER, target.bolt11)
        assert retry.status is PayoutStatus.REJECTED
        await assert_books_balance(ledger)
    assert await asker.balance_msat() == 100_000
    assert await agent.balance_msat() == 0
