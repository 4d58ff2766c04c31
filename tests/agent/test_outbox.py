"""The publisher: replies stored, published through a real relay, and marked sent once a relay
accepted them (the acceptances batched into shared writes)."""

import asyncio
from collections.abc import Sequence

import pytest

from bot.agent.inbox import build_reply
from bot.agent.outbox import Publisher
from bot.agent.routing import RelayLists
from bot.nostr.event import sign_event
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.config import RelayConfig
from storage import Database, Outbox, OutgoingEvent, StorageFailure
from tests.fixtures.relay import RelayFactory
from tests.relays.helpers import wait_until
from tests.relays.scripted_relay import Script, scripted_relay


async def test_replies_sent_at_once_are_all_marked_sent(relay_url: str,
                                                        agent_db: Database) -> None:
    agent, askers = Keys.generate(), [Keys.generate() for _ in range(20)]
    outbox = Outbox(agent_db)
    async with RelayPool([RelayConfig(relay_url)], keys=agent) as pool:
        assert await pool.wait_connected(10)
        publisher = Publisher(outbox, pool, RelayLists(pool))
        messages = [build_reply(agent, "nip17", a.public_hex, None, f"reply {i}")
                    for i, a in enumerate(askers)]
        sent = await asyncio.gather(*(
            publisher.send(f"reply:{i}", events, recipient=a.public_hex, protocol="nip17")
            for i, (a, events) in enumerate(zip(askers, messages, strict=True))))
        assert all(sent)
        assert await wait_until(lambda: publisher.published == 40)
        assert await publisher.flush(10) == 0  # none pending: every accepted event marked
        stored = await pool.fetch([{"ids": [e.id for m in messages for e in m]}], timeout_s=5)
        assert len(stored) == 40


class _MarkFailsOnce(Outbox):
    """The ledger refuses the first acceptances' write (a full disk, say)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.refused: list[str] = []

    async def mark_sent(self, event_ids: Sequence[str]) -> None:
        if not self.refused:
            self.refused = list(event_ids)
            raise StorageFailure("database write failed: disk full")
        await super().mark_sent(event_ids)


async def test_acceptances_not_marked_stay_pending_and_go_out_again_the_same(
        relay_url: str, agent_db: Database) -> None:
    agent, asker = Keys.generate(), Keys.generate()
    outbox = _MarkFailsOnce(agent_db)
    async with RelayPool([RelayConfig(relay_url)], keys=agent) as pool:
        assert await pool.wait_connected(10)
        publisher = Publisher(outbox, pool, RelayLists(pool))
        events = build_reply(agent, "nip17", asker.public_hex, None, "the reply")
        assert await publisher.send("reply:1", events, recipient=asker.public_hex,
                                    protocol="nip17")
        assert await wait_until(lambda: bool(outbox.refused))
        assert await wait_until(lambda: publisher.published == 2)
        ids = {e.id for e in events}
        refused = set(outbox.refused)  # the first batch: the events accepted first
        assert refused <= ids
        assert {item.event_id for item in await outbox.claim_pending()} == refused  # still pending
        retry = asyncio.create_task(publisher.run())
        try:  # republished from the store (the same events), then marked sent
            assert await wait_until(lambda: publisher.published == 2 + len(refused))
            assert await publisher.flush(10) == 0
        finally:
            retry.cancel()
        # the wraps are signed by one-time keys: addressed to the asker and the agent's copy
        stored = await pool.fetch([{"#p": [asker.public_hex, agent.public_hex]}], timeout_s=5)
        assert {e.id for e in stored} == ids  # the same events, no second encryption


async def _dm_relays(pool: RelayPool, asker: Keys, *urls: str) -> None:
    """The asker publishes their kind-10050 DM relay list through ``pool``."""
    listing = sign_event(asker, 10050, "", [["relay", u] for u in urls])
    assert (await pool.publish(listing, timeout_s=10)).ok


async def until_attempted(outbox: Outbox, key: str) -> bool:
    """Wait until the message's first event counts a refused or unanswered attempt."""
    for _ in range(400):
        if (await outbox.message(key))[0].attempts:
            return True
        await asyncio.sleep(0.05)
    return False


async def _on(relay_url: str, reader: Keys, event_id: str) -> list[str]:
    """``[event_id]`` when the relay serves that event, else ``[]``."""
    async with RelayPool([RelayConfig(relay_url)], keys=reader) as check:
        assert await check.wait_connected(10)
        return [e.id for e in await check.fetch([{"ids": [event_id]}], timeout_s=5)]


async def _retried(publisher: Publisher, published: int) -> None:
    """Run the publisher's retries until ``published`` events went out, all marked sent."""
    retry = asyncio.create_task(publisher.run())
    try:
        assert await wait_until(lambda: publisher.published == published, timeout_s=40)
        assert await publisher.flush(10) == 0
    finally:
        retry.cancel()


async def _state(outbox: Outbox, key: str) -> list[tuple[bool, tuple[str, ...]]]:
    return [(item.sent, item.deliver_to) for item in await outbox.message(key)]


async def test_a_reply_waits_for_the_askers_own_relay_not_the_one_it_came_through(
        relay_factory: RelayFactory, agent_db: Database) -> None:
    """The asker reads only their kind-10050 relay, down when the reply is sent: the reply the
    arrival relay took stays pending, and reaches the asker's relay once it is back."""
    agent, asker = Keys.generate(), Keys.generate()
    arrival, theirs = relay_factory(), relay_factory()
    outbox = Outbox(agent_db)
    async with RelayPool([RelayConfig(arrival.url)], keys=agent) as pool:
        assert await pool.wait_connected(10)
        await _dm_relays(pool, asker, theirs.url)
        theirs.kill()
        publisher = Publisher(outbox, pool, RelayLists(pool))
        events = build_reply(agent, "nip17", asker.public_hex, None, "the reply")
        assert await publisher.send("reply:1", events, recipient=asker.public_hex,
                                    protocol="nip17", arrival=[arrival.url])
        assert await wait_until(lambda: publisher.published == 1)  # the self copy
        assert await until_attempted(outbox, "reply:1")
        assert await _state(outbox, "reply:1") == [(False, (theirs.url,)), (True, ())]
        [pending] = await outbox.claim_pending()
        assert pending.relays == (arrival.url, theirs.url)
        got = await pool.fetch([{"ids": [events[0].id]}], timeout_s=5)
        assert [e.id for e in got] == [events[0].id]  # the arrival relay has it already
        theirs.start()
        await _retried(publisher, 2)
    assert await _on(theirs.url, asker, events[0].id) == [events[0].id]


async def test_after_the_delivery_window_any_relay_acceptance_counts(
        relay_factory: RelayFactory, agent_db: Database) -> None:
    agent, asker = Keys.generate(), Keys.generate()
    arrival, gone = relay_factory(), relay_factory()
    outbox = Outbox(agent_db)
    async with RelayPool([RelayConfig(arrival.url)], keys=agent) as pool:
        assert await pool.wait_connected(10)
        await _dm_relays(pool, asker, gone.url)
        gone.kill()  # for good
        publisher = Publisher(outbox, pool, RelayLists(pool), delivery_window_s=0)
        events = build_reply(agent, "nip17", asker.public_hex, None, "the reply")
        assert await publisher.send("reply:1", events, recipient=asker.public_hex,
                                    protocol="nip17", arrival=[arrival.url])
        assert await wait_until(lambda: publisher.published == 2)
        assert await publisher.flush(10) == 0
        assert [sent for sent, _ in await _state(outbox, "reply:1")] == [True, True]


async def test_a_read_only_relay_of_the_agent_is_never_published_to(
        relay_factory: RelayFactory, agent_db: Database) -> None:
    """The request came through a relay the operator keeps for reading: the reply goes to the
    write relays only, and their acceptance delivers it."""
    agent, asker = Keys.generate(), Keys.generate()
    writer, reader = relay_factory(), relay_factory()
    outbox = Outbox(agent_db)
    async with RelayPool([RelayConfig(writer.url),
                          RelayConfig(reader.url, read=True, write=False)], keys=agent) as pool:
        assert await pool.wait_connected(10, all_relays=True)
        publisher = Publisher(outbox, pool, RelayLists(pool))
        events = build_reply(agent, "nip04", asker.public_hex, None, "the reply")
        assert await publisher.send("reply:1", events, recipient=asker.public_hex,
                                    protocol="nip04", arrival=[reader.url])
        assert await wait_until(lambda: publisher.published == 1)
        assert await publisher.flush(10) == 0
    assert await _on(writer.url, asker, events[0].id) == [events[0].id]
    assert await _on(reader.url, asker, events[0].id) == []


async def test_a_reply_stored_before_a_crash_is_routed_to_the_askers_relays_after_it(
        relay_factory: RelayFactory, agent_db: Database) -> None:
    """The process died between storing the reply and looking the asker's lists up: the row
    holds the relays the request came through. The next process looks the lists up itself:
    the arrival relay's acceptance does not deliver the reply, the asker's relay does."""
    agent, asker = Keys.generate(), Keys.generate()
    arrival, theirs = relay_factory(), relay_factory()
    outbox = Outbox(agent_db)
    [event, _] = build_reply(agent, "nip17", asker.public_hex, None, "the reply")
    # what Publisher.send stores while the asker's lists are not known yet
    assert await outbox.add("reply:1", [OutgoingEvent(event.id, event.to_json(),
                                                      asker.public_hex, (arrival.url,),
                                                      (arrival.url,))])
    async with RelayPool([RelayConfig(arrival.url)], keys=agent) as pool:
        assert await pool.wait_connected(10)
        await _dm_relays(pool, asker, theirs.url)
        theirs.kill()
        publisher = Publisher(outbox, pool, RelayLists(pool))
        retry = asyncio.create_task(publisher.run())
        try:
            assert await until_attempted(outbox, "reply:1")
            assert await _state(outbox, "reply:1") == [(False, (theirs.url,))]
            theirs.start()
            assert await wait_until(lambda: publisher.published == 1, timeout_s=40)
            assert await publisher.flush(10) == 0
        finally:
            retry.cancel()
    assert await _on(theirs.url, asker, event.id) == [event.id]


@pytest.mark.parametrize("form", ["", "/"])
async def test_a_read_only_relay_of_the_agent_named_by_the_askers_list_is_not_written_to(
        relay_factory: RelayFactory, agent_db: Database, form: str) -> None:
    """The asker's DM relays, learnt after the reply was stored, include a relay the agent
    keeps for reading only (named as the agent's config does, or with a trailing slash): the
    reply goes to their other relay, not to that one."""
    agent, asker = Keys.generate(), Keys.generate()
    writer, reader, theirs = relay_factory(), relay_factory(), relay_factory()
    outbox = Outbox(agent_db)
    async with RelayPool([RelayConfig(writer.url),
                          RelayConfig(reader.url, read=True, write=False)], keys=agent) as pool:
        assert await pool.wait_connected(10, all_relays=True)
        listing = sign_event(asker, 10050, "", [["relay", reader.url + form],
                                                ["relay", theirs.url]])
        assert (await pool.publish_to(listing, [reader.url], timeout_s=10)).ok
        publisher = Publisher(outbox, pool, RelayLists(pool))
        events = build_reply(agent, "nip17", asker.public_hex, None, "the reply")
        assert await publisher.send("reply:1", events, recipient=asker.public_hex,
                                    protocol="nip17", arrival=[writer.url])
        assert await wait_until(lambda: publisher.published == 2)
        assert await publisher.flush(10) == 0
    assert await _on(theirs.url, asker, events[0].id) == [events[0].id]
    assert await _on(reader.url, asker, events[0].id) == []


async def test_a_reply_whose_askers_lists_cannot_be_looked_up_waits_for_them(
        relay_factory: RelayFactory, agent_db: Database) -> None:
    """The agent's read relay (where the asker's lists are) is down when the reply is sent: no
    list is not the same as an unknown list. The reply the write relay took stays pending, and
    goes to the asker's DM relay once the look-up answers."""
    agent, asker = Keys.generate(), Keys.generate()
    writer, reader, theirs = relay_factory(), relay_factory(), relay_factory()
    outbox = Outbox(agent_db)
    async with RelayPool([RelayConfig(writer.url, read=False),
                          RelayConfig(reader.url, write=False)], keys=agent) as pool:
        assert await pool.wait_connected(10, all_relays=True)
        listing = sign_event(asker, 10050, "", [["relay", theirs.url]])
        assert (await pool.publish_to(listing, [reader.url], timeout_s=10)).ok
        reader.kill()
        publisher = Publisher(outbox, pool, RelayLists(pool, timeout_s=1))
        events = build_reply(agent, "nip17", asker.public_hex, None, "the reply")
        assert await publisher.send("reply:1", events, recipient=asker.public_hex,
                                    protocol="nip17", arrival=[writer.url])
        assert await wait_until(lambda: publisher.published == 1)  # the self copy
        assert await until_attempted(outbox, "reply:1")
        assert await _state(outbox, "reply:1") == [(False, (writer.url,)), (True, ())]
        reader.start()
        await _retried(publisher, 2)
    assert await _on(theirs.url, asker, events[0].id) == [events[0].id]


async def test_a_retry_held_up_by_a_silent_relay_does_not_hold_up_a_new_reply(
        relay_factory: RelayFactory, agent_db: Database) -> None:
    """One publish at a time: an earlier reply's retry waits on an asker's relay that never
    says OK (it may, for the whole publish timeout); a new reply goes out meanwhile."""
    agent, first, second = Keys.generate(), Keys.generate(), Keys.generate()
    writer = relay_factory()
    outbox = Outbox(agent_db)
    [old] = build_reply(agent, "nip04", first.public_hex, None, "the earlier reply")
    async with scripted_relay(Script(silent=True)) as silent, \
            RelayPool([RelayConfig(writer.url)], keys=agent) as pool:
        assert await pool.wait_connected(10)
        assert await outbox.add("reply:1", [OutgoingEvent(  # left pending by an earlier run
            old.id, old.to_json(), first.public_hex, (silent.url,), (silent.url,))])
        publisher = Publisher(outbox, pool, RelayLists(pool), concurrency=1)
        retry = asyncio.create_task(publisher.run())
        try:
            assert await wait_until(lambda: [e.id for e in silent.events] == [old.id])
            assert silent.sessions == 1  # the retry waits for its OK
            events = build_reply(agent, "nip04", second.public_hex, None, "the new reply")
            assert await publisher.send("reply:2", events, recipient=second.public_hex,
                                        protocol="nip04", arrival=[writer.url])
            assert await wait_until(lambda: publisher.published == 1)
            assert silent.sessions == 1  # the retry is still waiting
            for _ in range(400):  # the new reply's acceptance written
                if (await outbox.message("reply:2"))[0].sent:
                    break
                await asyncio.sleep(0.05)
        finally:
            retry.cancel()
        assert await publisher.flush(0) == 1  # the retry given up: the earlier reply pending
