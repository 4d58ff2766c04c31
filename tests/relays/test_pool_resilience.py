"""Two relays, a killed relay, a restarted agent: every event reaches the handler exactly once,
and the cursor lets a subscription resume where it stopped."""

from bot.nostr import nip17
from bot.nostr.event import sign_event
from bot.nostr.keys import Keys
from bot.relays import RelayPool, RelayState
from bot.relays.pool import GIFT_WRAP_LOOKBACK_S
from storage import Database, Intake
from tests.fixtures.relay import RelayFactory
from tests.relays.conftest import FAST_BACKOFF
from tests.relays.helpers import Collector, configs, wait_until


async def test_two_relays_one_delivery(relay_factory: RelayFactory, intake: Intake) -> None:
    first, second = relay_factory(), relay_factory()
    author, me = Keys.generate(), Keys.generate()
    got = Collector()
    async with RelayPool(configs(first.url, second.url), keys=me, store=intake,
                         backoff=FAST_BACKOFF) as pool, \
            RelayPool(configs(first.url, second.url), keys=author,
                      backoff=FAST_BACKOFF) as publisher:
        await pool.subscribe([{"authors": [author.public_hex]}], got)
        assert await pool.wait_connected(10, all_relays=True)
        assert await publisher.wait_connected(10, all_relays=True)
        events = [sign_event(author, 1, f"twice {i}") for i in range(10)]
        for event in events:
            result = await publisher.publish(event, wait_all=True)
            assert set(result.accepted) == {first.url, second.url}
        assert await wait_until(lambda: all(s.events_in >= 10 for s in pool.status()))
        assert await wait_until(lambda: len(got.ids) >= 10)
    # stop() drained the dispatcher: nothing else can arrive now
    assert sorted(got.ids) == sorted(e.id for e in events)
    assert len(got.ids) == 10  # 20 deliveries, 10 handled
    assert pool.duplicates_dropped >= 10


async def test_gift_wraps_are_fetched_with_a_two_day_lookback(
        relay_url: str, intake: Intake) -> None:
    sender, me = Keys.generate(), Keys.generate()
    out = nip17.private_message(sender, me.public_hex, "sent while we were away")
    async with RelayPool(configs(relay_url), keys=sender, backoff=FAST_BACKOFF) as publisher:
        assert (await publisher.publish(out.to_recipient)).ok
    got = Collector()
    async with RelayPool(configs(relay_url), keys=me, store=intake,
                         backoff=FAST_BACKOFF) as pool:
        await pool.subscribe([{"kinds": [1059], "#p": [me.public_hex]}], got,
                             lookback_s=GIFT_WRAP_LOOKBACK_S)
        assert await wait_until(lambda: len(got.events) == 1)
    assert got.events[0] == out.to_recipient
    assert nip17.receive(me, got.events[0]).text == "sent while we were away"


async def test_relay_killed_mid_stream_then_agent_restarted(
        relay_factory: RelayFactory, tmp_path: object) -> None:
    relay = relay_factory()
    author, me = Keys.generate(), Keys.generate()
    db_path = f"{tmp_path}/agent.sqlite3"
    db = await Database.open(db_path)
    got = Collector()
    publisher = RelayPool(configs(relay.url), keys=author, backoff=FAST_BACKOFF)
    pool = RelayPool(configs(relay.url), keys=me, store=Intake(db), backoff=FAST_BACKOFF,
                     checkpoint_interval_s=0.2)
    await publisher.start()
    await pool.start()
    try:
        await pool.subscribe([{"authors": [author.public_hex], "kinds": [1]}], got)
        assert await pool.wait_connected(10)
        before = [sign_event(author, 1, f"before {i}") for i in range(5)]
        for event in before:
            assert (await publisher.publish(event)).ok
        assert await wait_until(lambda: len(got.events) == 5)

        relay.kill()
        assert await wait_until(lambda: pool.status()[0].state is not RelayState.CONNECTED)
        relay.start()  # same URL, same database

        after = [sign_event(author, 1, f"after {i}") for i in range(5)]
        for event in after:  # the publisher reconnects on its own and waits for OKs
            assert (await publisher.publish(event, timeout_s=20)).ok
        assert await wait_until(lambda: len(got.events) == 10)
        assert pool.status()[0].connects >= 2
        # the resubscription after the reconnect re-sent the stored events: all dropped
        assert pool.duplicates_dropped >= 5
        assert sorted(got.ids) == sorted(e.id for e in before + after)
        assert await wait_until(lambda: pool.status()[0].events_in >= 15)
    finally:
        await pool.stop()
        await publisher.stop()
    cursor = await Intake(db).cursor(relay.url)
    assert cursor is not None
    await db.close()

    # the agent restarts: same database, a new pool; the relay replays its stored events
    db = await Database.open(db_path)
    try:
        again = Collector()
        restarted = RelayPool(configs(relay.url), keys=me, store=Intake(db),
                              backoff=FAST_BACKOFF)
        async with restarted:
            await restarted.subscribe([{"authors": [author.public_hex], "kinds": [1]}], again)
            assert await wait_until(lambda: restarted.status()[0].events_in >= 10)
        # checked after stop(), which drains the dispatcher: all ten were handled before
        assert again.events == []
        assert restarted.duplicates_dropped >= 10
    finally:
        await db.close()


async def test_store_failure_freezes_cursors(relay_url: str, tmp_path: object) -> None:
    author = Keys.generate()
    db = await Database.open(f"{tmp_path}/closing.sqlite3")
    intake = Intake(db)
    got = Collector()
    pool = RelayPool(configs(relay_url), store=intake, backoff=FAST_BACKOFF,
                     checkpoint_interval_s=0.1)
    async with pool, RelayPool(configs(relay_url), backoff=FAST_BACKOFF) as publisher:
        await pool.subscribe([{"authors": [author.public_hex]}], got)
        assert (await publisher.publish(sign_event(author, 1, "recorded"))).ok
        assert await wait_until(lambda: len(got.events) == 1)
        await db.close()  # the database goes away under the running agent
        assert (await publisher.publish(sign_event(author, 1, "not recorded"))).ok
        assert await wait_until(lambda: pool.cursors_frozen)
    assert [e.content for e in got.events] == ["recorded"]  # never handed over unrecorded


async def test_without_durable_claim_an_interrupted_event_comes_back_after_restart(
        relay_url: str, tmp_path: object) -> None:
    """An idempotent subscriber (zap receipts) asks for no durable claim: an event whose handling
    a crash interrupted is handed over again after a restart, where a claiming one is not."""
    author, me = Keys.generate(), Keys.generate()
    db_path = f"{tmp_path}/agent.sqlite3"
    filters = [{"authors": [author.public_hex], "kinds": [1]}]
    event = sign_event(author, 1, "a receipt whose handling the crash interrupted")

    async def crashed(_: object, __: str) -> None:  # the process died inside the handler
        raise RuntimeError("killed half-way")

    db = await Database.open(db_path)
    try:
        async with RelayPool(configs(relay_url), keys=author, backoff=FAST_BACKOFF) as pub, \
                RelayPool(configs(relay_url), keys=me, store=Intake(db),
                          backoff=FAST_BACKOFF) as pool:
            await pool.subscribe(filters, crashed, durable_claim=False)
            assert await pool.wait_connected(10) and await pub.wait_connected(10)
            assert (await pub.publish(event)).ok
            assert await wait_until(lambda: pool.handler_errors >= 1)
    finally:
        await db.close()

    db = await Database.open(db_path)  # restart: same database
    try:
        idempotent, claiming = Collector(), Collector()
        async with RelayPool(configs(relay_url), keys=me, store=Intake(db),
                             backoff=FAST_BACKOFF) as restarted:
            await restarted.subscribe(filters, idempotent, durable_claim=False)
            assert await wait_until(lambda: len(idempotent.events) == 1)
        assert idempotent.ids == [event.id]
        # the same event, claimed durably once, is then never handed over again
        async with RelayPool(configs(relay_url), keys=me, store=Intake(db),
                             backoff=FAST_BACKOFF) as first:
            await first.subscribe(filters, claiming)
            assert await wait_until(lambda: len(claiming.events) == 1)
        async with RelayPool(configs(relay_url), keys=me, store=Intake(db),
                             backoff=FAST_BACKOFF) as second:
            again = Collector()
            await second.subscribe(filters, again)
            assert await wait_until(lambda: second.status()[0].events_in >= 1)
        assert again.events == []
    finally:
        await db.close()
