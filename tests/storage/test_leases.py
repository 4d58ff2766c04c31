"""Leases (storage.leases): taken with the record, renewed, expired, taken over, given back with
the reply — and, across real OS processes on one database, exactly one owner per row."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage import (
    Database,
    Intake,
    InvalidInput,
    Ledger,
    NewRequest,
    Outbox,
    OutgoingEvent,
    PayoutState,
    Replica,
    RequestOp,
)
from storage.leases import PAYOUT_LEASE_S, dead_here
from tests.storage.conftest import LIMITS
from tests.storage.lease_worker import LEASE_S, RELAY, REQUESTS
from tests.storage.support import ManualClock, assert_invariants, migrate_to, raw

REPO = Path(__file__).resolve().parents[2]
LEASE = 30


def _new(request_id: str = "r1") -> NewRequest:
    return NewRequest(request_id, "alice", "nip04", "a question", request_id, ())


def _replicas(db: Database, clock: ManualClock) -> tuple[Intake, Intake]:
    a = Intake(db, clock=clock, replica=Replica(LEASE, "host-a:1:aa"))
    b = Intake(db, clock=clock, replica=Replica(LEASE, "host-b:1:bb"))
    return a, b


async def test_the_recording_replica_holds_it_until_it_expires(db: Database,
                                                               clock: ManualClock) -> None:
    a, b = _replicas(db, clock)
    record = await a.record(_new(), ["r1"])
    assert record is not None
    assert (record.lease_owner, record.lease_until) == ("host-a:1:aa", clock.now + LEASE)
    assert a.holds(record, LEASE - 1) and not b.holds(record)
    assert not await b.take_lease("r1")  # a live lease: left to its owner
    clock.advance(LEASE - 1)
    assert await a.renew_leases(["r1"]) == 1  # renewed while the work runs
    clock.advance(LEASE - 1)
    assert not await b.take_lease("r1")
    clock.advance(1)  # expired: taken over
    assert await b.take_lease("r1")
    assert await a.renew_leases(["r1"]) == 0  # lost: the old owner cannot renew it
    assert not await a.take_lease("r1")
    assert (await a.request("r1")).lease_owner == "host-b:1:bb"
    assert await a.next_lease_expiry() == clock.now + LEASE
    assert await b.next_lease_expiry() is None  # its own leases are not another's


async def test_the_reply_gives_the_lease_back(db: Database, clock: ManualClock) -> None:
    a, b = _replicas(db, clock)
    await a.record(_new(), ["r1"])
    outbox = Outbox(db, clock=clock, replica=a.replica)
    event = OutgoingEvent("e" * 64, '{"id": "e"}', "alice")
    assert await outbox.add("reply:r1", [event], request_id="r1",
                            request_op=RequestOp.WAIT)  # a quote: waits on the asker
    assert (await a.request("r1")).lease_owner is None
    assert await b.take_lease("r1")  # the payment may be worked by any replica
    await b.move_request("r1", RequestOp.CLOSE)
    closed = await a.request("r1")
    assert (closed.lease_owner, closed.lease_until) == (None, 0)
    assert not await a.take_lease("r1") and not await b.take_lease("r1")  # finished: no lease


async def test_release_and_dropped_requests(db: Database, clock: ManualClock) -> None:
    a, b = _replicas(db, clock)
    await a.record(_new("r1"), ["r1"])
    dropped = await a.record(_new("r2"), ["r2"], dropped=True)
    assert dropped is not None and dropped.lease_owner is None
    await b.release_lease("r1")  # not b's: nothing
    assert (await a.request("r1")).lease_owner == "host-a:1:aa"
    await a.release_lease("r1")
    assert await b.take_lease("r1")
    assert await b.release_leases() == 1
    assert await a.lease_owners() == []


async def test_outbox_events_are_published_by_their_leaseholder(db: Database,
                                                                clock: ManualClock) -> None:
    a, b = _replicas(db, clock)
    box_a = Outbox(db, clock=clock, replica=a.replica)
    box_b = Outbox(db, clock=clock, replica=b.replica)
    await box_a.add("k1", [OutgoingEvent("1" * 64, "{}"), OutgoingEvent("2" * 64, "{}")])
    assert [i.event_id for i in await box_a.claim_pending()] == ["1" * 64, "2" * 64]
    assert await box_b.claim_pending() == []  # a's, live
    clock.advance(LEASE - 1)
    await box_a.mark_attempt("1" * 64)  # a retries it: still a's
    clock.advance(1)
    assert [i.event_id for i in await box_b.claim_pending()] == ["2" * 64]  # a's lapsed
    assert await box_a.claim_pending() == [(await box_a.message("k1"))[0]]
    await box_a.mark_sent(["1" * 64])
    await box_b.mark_sent(["2" * 64])
    assert await box_a.claim_pending() == [] and await box_b.claim_pending() == []
    assert await a.lease_owners() == []


async def test_a_payout_is_claimed_by_one_replica(db: Database, clock: ManualClock) -> None:
    ledger = Ledger(db, LIMITS, clock=clock)
    a, b = Replica(LEASE, "host-a:1:aa"), Replica(LEASE, "host-b:1:bb")
    await ledger.decide("g1", "alice", 10_000)
    await ledger.attach_invoice("g1", "hash-g1", 10_000, clock.now + 600)
    await ledger.confirm_payment("g1", 10_000, "pay:g1")
    await ledger.start("g1")
    await ledger.settle("g1", 4_000)
    payout = await ledger.begin_payout("g1", "lnbc60n1...", "payout:g1:1", replica=a)
    assert await ledger.claim_payout(payout.payout_id, a)
    assert not await ledger.claim_payout(payout.payout_id, b)
    clock.advance(PAYOUT_LEASE_S - 1)  # longer than any wallet call, whatever lease_s says
    assert not await ledger.claim_payout(payout.payout_id, b)
    clock.advance(1)
    assert await ledger.claim_payout(payout.payout_id, b)
    assert not await ledger.claim_payout(payout.payout_id, a)
    done = await ledger.confirm_payout(payout.payout_id, "preimage")
    assert done.state is PayoutState.PAID
    clock.advance(PAYOUT_LEASE_S)
    assert not await ledger.claim_payout(payout.payout_id, a)  # finished: nothing to claim
    await assert_invariants(db)


async def test_leases_of_dead_processes_of_this_host_are_freed(db: Database,
                                                               clock: ManualClock) -> None:
    me = Replica(LEASE)
    host = me.id.rsplit(":", 2)[0]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = f"{host}:{int(gone.stdout)}:00"
    earlier_run = f"{host}:{os.getpid()}:11"  # this pid, another token (a container's pid 1)
    alive = f"{host}:{os.getppid()}:22"
    elsewhere = f"other-{host}:{int(gone.stdout)}:33"
    for i, owner in enumerate((dead, earlier_run, alive, elsewhere)):
        await Intake(db, clock=clock, replica=Replica(LEASE, owner)).record(_new(f"r{i}"))
    assert [dead_here(o, me) for o in (dead, earlier_run, alive, elsewhere, me.id)] == [
        True, True, False, False, False]
    intake = Intake(db, clock=clock, replica=me)
    assert sorted(await intake.free_dead_leases()) == sorted([dead, earlier_run])
    assert await intake.lease_owners() == sorted([alive, elsewhere])
    assert await intake.take_lease("r0") and await intake.take_lease("r1")
    assert not await intake.take_lease("r2") and not await intake.take_lease("r3")


def test_replica_settings_are_checked() -> None:
    with pytest.raises(InvalidInput):
        Replica(2)
    with pytest.raises(InvalidInput):
        Replica(30, "")
    assert Replica().lease_s == 30 and Replica().id != Replica().id


async def test_a_version_3_file_gains_free_leases(empty_location: str,
                                                  clock: ManualClock) -> None:
    migrate_to(empty_location, 3)
    with raw(empty_location) as conn:
        conn.execute("INSERT INTO requests (id, sender, protocol, body, reply_to, relays, state,"
                     " created_at, updated_at) VALUES ('old', 'alice', 'nip04', 'q', 'old',"
                     " '[]', 'new', 1, 1)")
    db = await Database.open(empty_location)
    try:
        intake = Intake(db, clock=clock, replica=Replica(LEASE, "host-a:1:aa"))
        old = await intake.request("old")
        assert (old.lease_owner, old.lease_until) == (None, 0)
        assert await intake.take_lease("old")
    finally:
        await db.close()


def _run(args: list[str]) -> list[str]:
    procs = [subprocess.Popen([sys.executable, "-m", "tests.storage.lease_worker", args[0],
                               args[1], str(p), *args[2:]], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in range(4)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        lines = out.splitlines()
        assert lines[-1] == "DONE"
        outputs.append(out)
    return outputs


def test_four_processes_race_for_the_same_rows(db_location: str) -> None:
    path = db_location
    recorded = _run(["record", path])
    owner_of: dict[str, str] = {}
    for out in recorded:
        me = out.splitlines()[0].removeprefix("ME ")
        for line in out.splitlines():
            if line.startswith("RECORDED "):
                assert line[9:] not in owner_of  # recorded by one process only
                owner_of[line[9:]] = me
    assert sorted(owner_of) == sorted(REQUESTS)

    async def leave_work() -> None:
        db = await Database.open(path)
        intake = Intake(db)
        for request_id, owner in owner_of.items():
            assert (await intake.request(request_id)).lease_owner == owner
        assert await intake.cursor(RELAY) == 1_000 + 3 * 100 + len(REQUESTS) - 1  # the max
        parked = Replica(LEASE_S, "parked:1:00")
        await Outbox(db, replica=parked).add(
            "k", [OutgoingEvent(f"{i:064x}", "{}") for i in range(20)])
        ledger = Ledger(db, LIMITS)
        await ledger.decide("g1", "alice", 10_000)
        await ledger.attach_invoice("g1", "hash-g1", 10_000, 4_000_000_000)
        await ledger.confirm_payment("g1", 10_000, "pay:g1")
        await ledger.start("g1")
        await ledger.settle("g1", 4_000)
        await ledger.begin_payout("g1", "lnbc60n1...", "payout:g1:1", replica=parked)
        await db.close()

    asyncio.run(leave_work())
    taken = _run(["take", path, str(LEASE_S + 1)])  # every lease above has expired
    won: dict[str, list[str]] = {"TOOK": [], "EVENT": [], "PAYOUT": []}
    took_by: dict[str, str] = {}
    for out in taken:
        me = out.splitlines()[0].removeprefix("ME ")
        for line in out.splitlines()[1:-1]:
            kind, _, row = line.partition(" ")
            won[kind].append(row)
            if kind == "TOOK":
                took_by[row] = me
    assert sorted(won["TOOK"]) == sorted(REQUESTS)  # each request taken over exactly once
    assert sorted(won["EVENT"]) == sorted(f"{i:064x}" for i in range(20))
    assert len(won["PAYOUT"]) == 1

    async def verify() -> None:
        db = await Database.open(path)
        intake = Intake(db)
        for request_id, owner in took_by.items():
            assert (await intake.request(request_id)).lease_owner == owner
        await assert_invariants(db)
        await db.close()

    asyncio.run(verify())


async def test_a_replica_giving_work_back_wakes_the_others(db_location: str, engine: str,
                                                           clock: ManualClock) -> None:
    one, two = await Database.open(db_location), await Database.open(db_location)
    try:
        waiting = Intake(one, clock=clock, replica=Replica(LEASE, "host-a:1:aa"))
        stopping = Intake(two, clock=clock, replica=Replica(LEASE, "host-b:1:bb"))
        await stopping.record(_new(), ["r1"])
        assert not await waiting.wait_for_work(0.05)  # nothing given back: the timeout
        bound = 30.0 if engine == "postgresql" else 0.5  # SQLite: no notification comes
        woken = asyncio.create_task(waiting.wait_for_work(bound))
        await asyncio.sleep(0.1)
        assert await stopping.release_leases() == 1  # parks its work, and says so
        # PostgreSQL: woken at once by the notification; SQLite: only the timer wakes it
        assert await woken is (engine == "postgresql")
        assert await waiting.take_lease("r1")
        assert await waiting.release_leases([]) == 1  # its own (none named: its own)
    finally:
        await one.close()
        await two.close()
