"""A separate OS process racing other replicas for the same rows, for the lease tests.

``python -m tests.storage.lease_worker record DB PROC`` — records the shared requests
(``REQUESTS``, each with the claim of its event id) and moves the shared relay cursor; prints
``ME <replica id>``, one ``RECORDED <id>`` per request it recorded first, then ``DONE``.
``python -m tests.storage.lease_worker take DB PROC OFFSET`` — with its clock ``OFFSET``
seconds ahead (every lease taken before has expired for it), tries to take every shared
request, the pending outbox events and the sending payout; prints ``ME``, ``TOOK <id>``,
``EVENT <id>``, ``PAYOUT <id>`` for what it won, then ``DONE``.
Every replica's lease lasts an hour, so no lease won here can expire during the race.
"""

from __future__ import annotations

import asyncio
import sys
import time

from storage import Database, Intake, Ledger, Limits, NewRequest, Outbox, Replica

REQUESTS = [f"{i:064x}" for i in range(60)]
RELAY = "ws://relay.example"
LEASE_S = 3600


def clock_ahead(offset: int) -> int:
    return int(time.time()) + offset


async def record(path: str, proc: int) -> None:
    db = await Database.open(path)
    me = Replica(LEASE_S)
    intake = Intake(db, replica=me)
    print(f"ME {me.id}", flush=True)

    async def one(i: int, request_id: str) -> None:
        new = NewRequest(request_id, f"{i % 7:064x}", "nip04", f"question {i}", request_id,
                         (RELAY,))
        if await intake.record(new, [request_id]) is not None:
            print(f"RECORDED {request_id}", flush=True)
        await intake.set_cursor(RELAY, 1_000 + proc * 100 + i)

    await asyncio.gather(*(one(i, r) for i, r in enumerate(REQUESTS)))
    await db.close()
    print("DONE", flush=True)


async def take(path: str, proc: int, offset: int) -> None:
    db = await Database.open(path)
    me = Replica(LEASE_S)

    def clock() -> int:
        return clock_ahead(offset)

    intake = Intake(db, clock=clock, replica=me)
    outbox = Outbox(db, clock=clock, replica=me)
    ledger = Ledger(db, Limits(0, 0), clock=clock)
    print(f"ME {me.id}", flush=True)

    async def one(request_id: str) -> None:
        if await intake.take_lease(request_id):
            print(f"TOOK {request_id}", flush=True)

    async def events() -> None:
        for item in await outbox.claim_pending():
            print(f"EVENT {item.event_id}", flush=True)

    async def payouts() -> None:
        for payout in await ledger.unfinished_payouts():
            if await ledger.claim_payout(payout.payout_id, me):
                print(f"PAYOUT {payout.payout_id}", flush=True)

    order = REQUESTS[proc * 15:] + REQUESTS[:proc * 15]  # each process starts elsewhere
    await asyncio.gather(events(), payouts(), *(one(r) for r in order))
    await db.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "record":
        asyncio.run(record(sys.argv[2], int(sys.argv[3])))
    else:
        asyncio.run(take(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
