"""A process that dies (SIGKILL, no cleanup) in the middle of a refund payout.

Run as ``python -m tests.agent.payout_crash_child STAGE`` with the environment variables
``CRASH_DB``, ``CRASH_URL``, ``CRASH_INKEY``, ``CRASH_ADMINKEY``, ``CRASH_JOB``, ``CRASH_PUBKEY``,
``CRASH_BOLT11``. STAGE ``recorded``: killed right after the payout is recorded, before sending.
STAGE ``sent``: killed right after the wallet paid, before the ledger confirms.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httpx

from bot.agent.payouts import Payouts
from bot.wallets.config import PayoutPolicy
from bot.wallets.lnbits import LnbitsWallet
from storage import Database, Ledger, Payout
from tests.agent.money import NO_SUBSIDY


def die(stage: str) -> None:
    print(stage, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


async def main(stage: str) -> None:
    env = os.environ
    db = await Database.open(env["CRASH_DB"])
    ledger = Ledger(db, NO_SUBSIDY)
    async with httpx.AsyncClient() as http:
        wallet = LnbitsWallet(http, url=env["CRASH_URL"], invoice_key=env["CRASH_INKEY"],
                              admin_key=env["CRASH_ADMINKEY"])
        payouts = Payouts(ledger, wallet)
        recorded = await payouts.record(env["CRASH_JOB"], env["CRASH_PUBKEY"], env["CRASH_BOLT11"])
        if not isinstance(recorded, Payout):
            print(f"not recorded: {recorded.reason}", flush=True)
            sys.exit(3)
        if stage == "recorded":
            die(stage)
        result = await wallet.pay_invoice(
            recorded.destination, max_fee_msat=PayoutPolicy().fee_cap(recorded.amount_msat)
        )
        if not result.succeeded:
            print(f"not paid: {result.reason}", flush=True)
            sys.exit(4)
        die(stage)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
