"""Wallet benchmark: bolt11 decoding and durable settlement/payout rates, beside baselines.

Run: ``.venv/bin/python bench/wallets.py [--seconds S] [--dir DIR]``. Each figure runs for about
S seconds (default 2):

- ``decode``: ``bot.wallets.bolt11.decode_invoice`` (library decode, signature recovery, checks)
  against ``raw_decode``, the ``bolt11`` library's own ``decode`` on the same strings (baseline);
- ``settle``: ``SettlementProcessor.apply`` of dev-wallet settlements for invoiced jobs
  (confirm_payment + exactly-once claim + job read, each durably committed), 64 concurrent,
  against ``raw_confirm``: ``ledger.confirm_payment`` alone on the same kind of jobs (baseline);
- ``payout``: ``Payouts.pay_to_invoice`` (check, record, pay through the dev wallet, confirm)
  one after another — the refund path end to end without a network.

The last line is ``decode_per_s=N raw_decode_per_s=M settle_per_s=S raw_confirm_per_s=C
payout_per_s=P``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import bolt11

from bot.agent.payouts import Payouts
from bot.agent.settlements import SettlementProcessor, payment_key
from bot.wallets.bolt11 import decode_invoice, encode_invoice
from bot.wallets.dev import DevNetwork, DevWallet
from storage import Database, Ledger, Limits

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.rates import async_rate, rate

NO_SUBSIDY = Limits(daily_free_msat=0, daily_free_jobs=0)
PUBKEY = "a1" * 32



def invoices(n: int) -> list[str]:
    key = os.urandom(32).hex()
    now = int(time.time())
    return [
        encode_invoice(network="bc", amount_msat=1_000 * (i + 1), payment_hash=os.urandom(32).hex(),
                       payment_secret=os.urandom(32).hex(), created_at=now, expiry_s=600,
                       node_key_hex=key, description=f"job {i}")
        for i in range(n)
    ]



async def settle_rates(directory: Path, seconds: float) -> tuple[float, float]:
    wallet = DevWallet()
    db = await Database.open(directory / "settle.db")
    try:
        ledger = Ledger(db, NO_SUBSIDY)
        processor = SettlementProcessor(ledger)

        async def invoiced(tag: str, i: int) -> str:
            job = f"{tag}-{i}"
            await ledger.decide(job, PUBKEY, 5_000)
            invoice = await wallet.make_invoice(5_000)
            await ledger.attach_invoice(job, invoice.payment_hash, 5_000, invoice.expires_at)
            return invoice.payment_hash

        # Jobs are prepared outside the timed part (concurrently, so group commit helps).
        n = int(1_500 * seconds)
        ready_settle = list(await asyncio.gather(*(invoiced("s", i) for i in range(n))))
        ready_raw = list(await asyncio.gather(*(invoiced("r", i) for i in range(n))))

        async def settle(i: int) -> None:
            await processor.apply(wallet.settle(ready_settle[i]))

        async def raw(i: int) -> None:
            payment_hash = ready_raw[i]
            await ledger.confirm_payment(payment_hash, 5_000, payment_key(payment_hash))

        settle_per_s = await async_rate(seconds, 64, len(ready_settle), settle)
        raw_per_s = await async_rate(seconds, 64, len(ready_raw), raw)
        return settle_per_s, raw_per_s
    finally:
        await db.close()


async def payout_rate(directory: Path, seconds: float) -> float:
    net = DevNetwork()
    agent = DevWallet(dev_network=net, balance_msat=10**12)
    asker = DevWallet(dev_network=net)
    db = await Database.open(directory / "payout.db")
    try:
        ledger = Ledger(db, NO_SUBSIDY)
        processor = SettlementProcessor(ledger)
        payouts = Payouts(ledger, agent)

        async def owed(i: int) -> tuple[str, str]:
            job = f"p-{i}"
            await ledger.decide(job, PUBKEY, 3_000)
            invoice = await agent.make_invoice(3_000)
            await ledger.attach_invoice(job, invoice.payment_hash, 3_000, invoice.expires_at)
            await processor.apply(agent.settle(invoice.payment_hash))
            await ledger.fail(job, "work failed")
            target = await asker.make_invoice(3_000)
            return job, target.bolt11

        jobs = list(await asyncio.gather(*(owed(i) for i in range(int(250 * seconds)))))

        async def pay(i: int) -> None:
            job, bolt11 = jobs[i]
            await payouts.pay_to_invoice(job, PUBKEY, bolt11)

        return await async_rate(seconds, 1, len(jobs), pay)
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    strings = invoices(200)
    decode_per_s = rate(args.seconds, lambda i: decode_invoice(strings[i % len(strings)]))
    raw_decode_per_s = rate(args.seconds, lambda i: bolt11.decode(strings[i % len(strings)]))
    print(f"decode  {decode_per_s:10.0f} /s   (bolt11 library alone: {raw_decode_per_s:.0f} /s)")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        settle_per_s, raw_per_s = asyncio.run(settle_rates(Path(tmp), args.seconds))
        print(f"settle  {settle_per_s:10.0f} /s   (confirm_payment alone: {raw_per_s:.0f} /s)")
        payout_per_s = asyncio.run(payout_rate(Path(tmp), args.seconds))
        print(f"payout  {payout_per_s:10.0f} /s   (record + send + confirm, one at a time)")
    print(
        f"decode_per_s={decode_per_s:.0f} raw_decode_per_s={raw_decode_per_s:.0f} "
        f"settle_per_s={settle_per_s:.0f} raw_confirm_per_s={raw_per_s:.0f} "
        f"payout_per_s={payout_per_s:.0f}"
    )


if __name__ == "__main__":
    main()
