"""Recorded requests (claimed with their event ids in one transaction) and the outbox."""

from __future__ import annotations

import asyncio

import pytest

from storage import (
    Database,
    IllegalTransition,
    Intake,
    InvalidAmount,
    InvalidInput,
    Ledger,
    NewRequest,
    Outbox,
    OutgoingEvent,
    RequestOp,
    RequestState,
)
from tests.storage.conftest import LIMITS
from tests.storage.support import ManualClock, raw


def _req(rid: str = "r1", sender: str = "alice", relay: str = "ws://a") -> NewRequest:
    return NewRequest(rid, sender, "nip17", "what is lightning?", "wrap1", (relay,))


async def test_a_request_is_recorded_once_with_its_claims(db_location: str) -> None:
    db = await Database.open(db_location)
    intake = Intake(db)
    results = await asyncio.gather(
        *(intake.record(_req(relay=f"ws://r{i}"), [f"wrap{i}", "rumor:r1"]) for i in range(5))
    )
    assert sum(r is not None for r in results) == 1
    for i in range(5):
        assert await intake.seen(f"wrap{i}")
    rec = await intake.request("r1")
    assert rec.state is RequestState.NEW
    assert sorted(rec.relays) == sorted(f"ws://r{i}" for i in range(5))  # arrival relays merged
    await db.close()
    db = await Database.open(db_location)  # durable
    intake = Intake(db)
    assert await intake.record(_req(), ["wrap0"]) is None
    assert [r.id for r in await intake.unfinished_requests()] == ["r1"]
    await db.close()


async def test_a_failed_record_claims_nothing(db: Database) -> None:
    intake = Intake(db)
    bad = NewRequest("r2", "alice", "nip04", "x" * 70_000, "ev", ("ws://a",))
    with pytest.raises(InvalidInput):
        await intake.record(bad, ["ev"])
    assert not await intake.seen("ev")


async def test_dropped_requests_keep_no_text_and_are_never_resumed(db: Database) -> None:
    intake = Intake(db)
    rec = await intake.record(_req("r3"), ["ev3"], dropped=True)
    assert rec is not None and rec.state is RequestState.DROPPED and rec.body is None
    assert await intake.unfinished_requests() == []
    with pytest.raises(IllegalTransition):
        await intake.move_request("r3", RequestOp.WAIT)


async def test_request_states_move_forward_only(db: Database) -> None:
    intake = Intake(db)
    await intake.record(_req("r4"), ["ev4"])
    await intake.move_request("r4", RequestOp.WAIT)
    await intake.move_request("r4", RequestOp.WAIT)  # a repeat is a no-op
    assert (await intake.request("r4")).state is RequestState.OPEN
    await intake.move_request("r4", RequestOp.CLOSE)
    await intake.move_request("r4", RequestOp.CLOSE)  # a repeat is a no-op
    assert (await intake.request("r4")).state is RequestState.CLOSED
    with pytest.raises(IllegalTransition):
        await intake.move_request("r4", RequestOp.WAIT)


async def _answered(intake: Intake, ledger: Ledger, request_id: str, answer: str) -> None:
    """A free job for the request, answered and settled (1000 msat)."""
    await ledger.decide(request_id, "bob", 2000)
    done = await intake.settle_answer(request_id, answer, 1000)
    assert done.actual_msat == 1000 and done.charged_msat == 0


async def test_history_and_erasure(db: Database, clock: ManualClock) -> None:
    intake, ledger = Intake(db, clock=clock), Ledger(db, LIMITS, clock=clock)
    await ledger.credit_pool(100_000, "pool")
    for i in range(4):
        await intake.record(NewRequest(f"q{i}", "bob", "nip04", f"question {i}", f"e{i}",
                                       ("ws://a",)), [f"e{i}"])
        await _answered(intake, ledger, f"q{i}", f"answer {i}")
        await intake.move_request(f"q{i}", RequestOp.CLOSE)
        clock.advance(10)
    await intake.record(NewRequest("j9", "bob", "nip90", '{"kind":5050}', "j9", ()), ["j9"])
    await _answered(intake, ledger, "j9", "a job's result")  # another protocol: not history
    dms = ("nip04", "nip17")
    assert await intake.history("bob", "q3", 2, dms) == [("question 1", "answer 1"),
                                                         ("question 2", "answer 2")]
    assert await intake.history("bob", "q3", 1, ("nip90",)) == [('{"kind":5050}',
                                                                 "a job's result")]
    assert await intake.history("carol", "x", 5, dms) == []
    assert await intake.history("bob", "x", 5, ()) == []
    assert await intake.erase_before(clock.now - 15) == 3
    assert await intake.history("bob", "none", 5, dms) == [("question 3", "answer 3")]
    rec = await intake.request("q0")
    assert rec.body is None and rec.answer is None and rec.answer_msat == 1000


async def test_outbox_stores_a_message_once_and_moves_the_request(db: Database) -> None:
    intake, outbox = Intake(db), Outbox(db)
    await intake.record(_req("r5"), ["ev5"])
    events = [OutgoingEvent("id-a", '{"id":"id-a"}', "alice", ("ws://x",)),
              OutgoingEvent("id-b", '{"id":"id-b"}', None)]
    added = await asyncio.gather(
        outbox.add("reply:r5", events, request_id="r5", request_op=RequestOp.CLOSE),
        outbox.add("reply:r5", [OutgoingEvent("id-c", "{}")], request_id="r5",
                   request_op=RequestOp.CLOSE),
    )
    assert sorted(added) == [False, True]
    assert (await intake.request("r5")).state is RequestState.CLOSED
    assert [i.event_id for i in await outbox.claim_pending()] in (["id-a", "id-b"], ["id-c"])
    assert await outbox.backlog() == len(await outbox.claim_pending())
    assert await outbox.key_of(events[0].event_id) in ("reply:r5", None)
    await outbox.mark_sent([item.event_id for item in await outbox.claim_pending()])
    assert await outbox.claim_pending() == []
    assert await outbox.backlog() == 0
    assert await outbox.has("reply:r5")


async def test_outbox_add_is_atomic_with_the_state_move(db: Database) -> None:
    intake, outbox = Intake(db), Outbox(db)
    await intake.record(_req("r6"), ["ev6"], dropped=True)
    with pytest.raises(IllegalTransition):
        await outbox.add("reply:r6", [OutgoingEvent("id-z", "{}")], request_id="r6",
                         request_op=RequestOp.CLOSE)
    assert not await outbox.has("reply:r6")


async def test_agent_state_survives(db_location: str) -> None:
    db = await Database.open(db_location)
    await Intake(db).set_state("paused", "1")
    await Intake(db).set_state("paused", "0")
    await db.close()
    db = await Database.open(db_location)
    assert await Intake(db).state("paused") == "0"
    assert await Intake(db).state("other") is None
    await db.close()
    with raw(db_location) as conn:
        assert tuple(conn.execute("SELECT COUNT(*) FROM agent_state").fetchone()) == (1,)


async def test_an_answer_is_kept_with_its_settlement_or_not_at_all(db: Database) -> None:
    intake, ledger = Intake(db), Ledger(db, LIMITS)
    await ledger.credit_pool(100_000, "pool")
    await intake.record(_req("r8"), ["ev8"])
    await ledger.decide("r8", "alice", 2000)
    with pytest.raises(InvalidAmount):  # above the estimate: refused, and no answer kept
        await intake.settle_answer("r8", "too dear", 3000)
    assert (await intake.request("r8")).answer is None
    assert str((await ledger.job("r8")).state) == "running"
    done = await intake.settle_answer("r8", "the answer", 1500)
    assert await intake.settle_answer("r8", "the answer", 1500) == done  # a repeat
    rec, job = await intake.request("r8"), await ledger.job("r8")
    assert (rec.answer, rec.answer_msat) == ("the answer", 1500)
    assert str(job.state) == "done" and job.actual_msat == 1500


async def test_outbox_route_retargets_a_pending_event_only(db: Database) -> None:
    """Where a reply must arrive is stored with it, changed by ``route`` while it is pending
    (the asker's lists learnt late) and left alone once it is sent; bad targets change nothing."""
    outbox = Outbox(db)
    events = [OutgoingEvent("id-r", '{"id":"id-r"}', "alice", ("ws://in",), ("ws://in",)),
              OutgoingEvent("id-s", '{"id":"id-s"}', None)]
    assert await outbox.add("reply:r9", events)
    assert [(i.relays, i.deliver_to) for i in await outbox.message("reply:r9")] == [
        (("ws://in",), ("ws://in",)), ((), ())]
    await outbox.route("id-r", ("ws://in", "wss://dm"), ("wss://dm",))
    [first, _] = await outbox.message("reply:r9")
    assert (first.relays, first.deliver_to, first.sent) == (
        ("ws://in", "wss://dm"), ("wss://dm",), False)
    for bad in ((f"wss://r{i}" for i in range(65)), ("wss://" + "x" * 600,), ("",)):
        with pytest.raises(InvalidInput):
            await outbox.route("id-r", ("ws://in",), tuple(bad))
    assert (await outbox.message("reply:r9"))[0].deliver_to == ("wss://dm",)
    await outbox.mark_sent(["id-r"])
    await outbox.route("id-r", ("ws://other",), ("ws://other",))
    [first, _] = await outbox.message("reply:r9")
    assert (first.relays, first.deliver_to, first.sent) == (
        ("ws://in", "wss://dm"), ("wss://dm",), True)
