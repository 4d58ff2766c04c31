"""A separate OS process driving the ledger, for the multi-process and crash tests.

``python -m tests.storage.worker hammer DB PROC N`` — a burst of concurrent operations, some on
keys and jobs shared by every process; prints ``DONE`` when finished.
``python -m tests.storage.worker crash DB RUN`` — writes forever with 16 concurrent tasks, printing
``ACK <key>`` after each operation returns (i.e. after its durable commit), until killed: zaps,
free jobs, sessions (top-up, hold, charge), and paid jobs taken through payment, settlement and a
refund payout.
"""

from __future__ import annotations

import asyncio
import itertools
import sys

from storage import Database, Ledger, Limits, Serve, whole_sats_up

HAMMER_LIMITS = Limits(daily_free_msat=5_000, daily_free_jobs=20)
CRASH_LIMITS = Limits(daily_free_msat=10**12, daily_free_jobs=10**9)
SHARED_ZAPS = 50
SHARED_JOBS = 20
ZAP_MSAT = 1_000


async def hammer(path: str, proc: int, n: int) -> None:
    db = await Database.open(path)
    ledger = Ledger(db, HAMMER_LIMITS)

    async def zap(i: int) -> None:
        await ledger.credit_pool(ZAP_MSAT, f"zap:{i}", source="zap", zapper_pubkey=f"z{i % 7}")

    async def free_job(j: int) -> None:
        job = f"p{proc}-j{j}"
        d = await ledger.decide(job, f"user{j % 10}", 700)
        if d.serve is Serve.FREE:
            if j % 3 == 0:
                await ledger.fail(job, "work failed")
            else:
                await ledger.settle(job, 500)

    async def shared_job(k: int) -> None:
        job = f"shared-{k}"
        d = await ledger.decide(job, f"user{k % 10}", 1_000_000)
        invoice = whole_sats_up(d.work_amount_msat)
        await ledger.attach_invoice(job, f"hash-{k}", invoice, 4_000_000_000)
        await ledger.confirm_payment(f"hash-{k}", invoice, f"pay:hash-{k}")

    tasks = [zap(i) for i in range(SHARED_ZAPS)]
    tasks += [free_job(j) for j in range(n)]
    tasks += [shared_job(k) for k in range(SHARED_JOBS)]
    await asyncio.gather(*tasks)
    await db.close()
    print("DONE", flush=True)


async def crash(path: str, run: int) -> None:
    db = await Database.open(path)
    ledger = Ledger(db, CRASH_LIMITS)
    gate = Ledger(db, Limits(daily_free_msat=0, daily_free_jobs=0))  # every job must pay
    counter = itertools.count()

    async def paid_job(key: str) -> None:
        """Payment → escrow → settlement → refund → payout: each step acked once committed."""
        d = await gate.decide(key, "payer", 5_000)
        invoice = whole_sats_up(d.work_amount_msat)
        await gate.attach_invoice(key, f"hash-{key}", invoice, 4_000_000_000)
        await gate.confirm_payment(f"hash-{key}", invoice, f"pay:hash-{key}")
        print(f"ACK pay:hash-{key}", flush=True)
        await gate.start(key)
        await gate.settle(key, 2_000)
        print(f"ACK job:{key}:settle", flush=True)
        p = await gate.begin_payout(key, "lnbc-refund", f"payout:{key}")
        await gate.confirm_payout(p.payout_id, f"preimage-{key}", 1)
        print(f"ACK payout:{key}", flush=True)

    async def session_job(key: str) -> None:
        """Top-up → the decision holds the balance → settlement charges it: each step acked."""
        await gate.credit_balance(f"saver-{key}", 5_000, f"top:{key}", "topup")
        print(f"ACK top:{key}", flush=True)
        d = await gate.decide(key, f"saver-{key}", 5_000)
        assert d.serve is Serve.SESSION, d
        print(f"ACK job:{key}:decide", flush=True)
        await gate.settle(key, 3_000)
        print(f"ACK job:{key}:settle", flush=True)

    async def loop() -> None:
        while True:
            i = next(counter)
            key = f"r{run}-{i}"
            if i % 2 == 0:
                await ledger.credit_pool(1_000 + i, f"zap:{key}", zapper_pubkey="z")
                print(f"ACK zap:{key}", flush=True)
            elif i % 4 == 3:
                await paid_job(key)
            elif i % 8 == 1:
                await session_job(key)
            else:
                d = await ledger.decide(key, f"user{i % 5}", 900)
                if d.serve is Serve.FREE:
                    await ledger.settle(key, 400)
                print(f"ACK job:{key}:decide", flush=True)

    await asyncio.gather(*(loop() for _ in range(16)))


def main(argv: list[str]) -> None:
    mode, path = argv[0], argv[1]
    if mode == "hammer":
        asyncio.run(hammer(path, int(argv[2]), int(argv[3])))
    elif mode == "crash":
        asyncio.run(crash(path, int(argv[2])))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
