"""Helpers shared by the settlement, top-up and payout tests: a real ledger, LNbits backends and
jobs awaiting payment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from bot.wallets.base import Wallet
from bot.wallets.lnbits import LnbitsWallet
from storage import Database, Ledger, Limits, check
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer

ASKER = "a1" * 32
OTHER = "b2" * 32
NO_SUBSIDY = Limits(daily_free_msat=0, daily_free_jobs=0)
FEE_CAP_MSAT = 10_000


def lnbits(http: httpx.AsyncClient, server: LnbitsServer, account: LnbitsAccount) -> LnbitsWallet:
    """The agent's (or a payer's) LNbits backend for a wallet of the test LNbits server."""
    return LnbitsWallet(http, url=server.url, invoice_key=account.inkey,
                        admin_key=account.adminkey)


@asynccontextmanager
async def open_ledger(path: Path) -> AsyncIterator[Ledger]:
    db = await Database.open(path)
    try:
        yield Ledger(db, NO_SUBSIDY)
    finally:
        await db.close()


async def assert_books_balance(ledger: Ledger) -> None:
    report = await check(ledger.db)
    assert report.ok, report.violations


async def invoiced_job(
    ledger: Ledger, wallet: Wallet, job_id: str, amount_msat: int, pubkey: str = ASKER,
    expiry_s: int = 600,
) -> tuple[str, str]:
    """A gate job (empty pool) with an invoice from ``wallet``: (payment_hash, bolt11)."""
    decision = await ledger.decide(job_id, pubkey, amount_msat)
    assert decision.work_amount_msat == amount_msat
    invoice = await wallet.make_invoice(amount_msat, description=f"job {job_id}",
                                        expiry_s=expiry_s)
    await ledger.attach_invoice(job_id, invoice.payment_hash, amount_msat, invoice.expires_at)
    return invoice.payment_hash, invoice.bolt11
