"""RelayPool against a real relay: subscribe, publish with OK, status, forged ids dropped."""

import json

import websockets

from bot.nostr.event import compute_id, sign_event
from bot.nostr.keys import Keys
from bot.relays import RelayPool, RelayState
from storage import Intake
from tests.fixtures.relay import RelayFactory
from tests.relays.conftest import FAST_BACKOFF
from tests.relays.helpers import Collector, configs, wait_until


async def test_publish_and_receive(relay_url: str, intake: Intake) -> None:
    author, reader = Keys.generate(), Keys.generate()
    got = Collector()
    async with RelayPool(configs(relay_url), keys=reader, store=intake,
                         backoff=FAST_BACKOFF) as sub_pool, \
            RelayPool(configs(relay_url), keys=author, backoff=FAST_BACKOFF) as pub_pool:
        await sub_pool.subscribe([{"authors": [author.public_hex], "kinds": [1]}], got)
        assert await sub_pool.wait_connected(10)
        events = [sign_event(author, 1, f"note {i} ⚡") for i in range(5)]
        for event in events:
            result = await pub_pool.publish(event)
            assert result.ok and result.accepted == (relay_url,), result
        assert await wait_until(lambda: len(got.events) >= 5)
        assert sorted(got.ids) == sorted(e.id for e in events)
        assert set(got.relays) == {relay_url}
        again = await pub_pool.publish(events[0])  # the relay says duplicate: still a success
        assert again.ok
        status = sub_pool.status()[0]
        assert status.state is RelayState.CONNECTED and status.events_in >= 5
        assert pub_pool.status()[0].events_out >= 5
        assert status.last_error is None


async def test_forged_id_served_by_relay_is_dropped(relay_url: str) -> None:
    author = Keys.generate()
    real = sign_event(author, 1, "real")
    forged = real.to_dict() | {"id": compute_id(author.public_hex, 1, 1, [], "other")}
    async with websockets.connect(relay_url) as ws:
        await ws.send(json.dumps(["EVENT", forged]))
        answer = json.loads(await ws.recv())
    assert answer[2] is True  # the relay took it: only our own check protects us
    got = Collector()
    async with RelayPool(configs(relay_url), backoff=FAST_BACKOFF) as pool:
        await pool.subscribe([{"authors": [author.public_hex]}], got, lookback_s=3600)
        assert await wait_until(lambda: pool.status()[0].invalid_in >= 1)
    assert got.events == []


async def test_unreachable_relay_backs_off_and_reports(relay_url: str) -> None:
    dead = "ws://127.0.0.1:9"
    pool = RelayPool(configs(relay_url, dead), backoff=FAST_BACKOFF)
    await pool.start()
    try:
        assert await pool.wait_connected(10)
        status = {s.url: s for s in pool.status()}
        assert await wait_until(lambda: pool.status()[1].last_error is not None)
        status = {s.url: s for s in pool.status()}
        assert status[relay_url].state is RelayState.CONNECTED
        assert status[dead].state in (RelayState.BACKING_OFF, RelayState.CONNECTING)
        assert status[dead].connects == 0
        event = sign_event(Keys.generate(), 1, "one relay is enough")
        result = await pool.publish(event, timeout_s=5)
        assert result.ok and result.accepted == (relay_url,)
        assert result.pending == (dead,)
    finally:
        await pool.stop()
    assert all(s.state is RelayState.STOPPED for s in pool.status())


async def test_a_forged_copy_never_displaces_the_real_event(relay_factory: RelayFactory) -> None:
    first, second = relay_factory(), relay_factory()
    author = Keys.generate()
    real = sign_event(author, 1, "real")
    forged = sign_event(author, 1, "forged").to_dict() | {"id": real.id}  # under the real id
    async with websockets.connect(first.url) as ws:
        await ws.send(json.dumps(["EVENT", real.to_dict()]))
        assert json.loads(await ws.recv())[2] is True
    async with websockets.connect(second.url) as ws:
        await ws.send(json.dumps(["EVENT", forged]))
        answer = json.loads(await ws.recv())
        assert answer[2] is True, answer  # this relay checks nothing
    got = Collector()
    async with RelayPool(configs(first.url, second.url), backoff=FAST_BACKOFF) as pool:
        await pool.subscribe([{"authors": [author.public_hex]}], got, lookback_s=3600)
        # whichever comes first: the forged copy refused, or dropped unread as held already
        assert await wait_until(lambda: sum(s.events_in + s.invalid_in
                                            for s in pool.status()) >= 2)
        assert await wait_until(lambda: len(got.events) >= 1)
    assert got.events == [real]


async def test_an_echo_of_our_own_event_is_dropped_unread(relay_url: str) -> None:
    me = Keys.generate()
    got = Collector()
    async with RelayPool(configs(relay_url), keys=me, backoff=FAST_BACKOFF) as pool:
        await pool.subscribe([{"authors": [me.public_hex]}], got)
        assert await pool.wait_connected(10)
        mine, other = sign_event(me, 1, "made here"), sign_event(me, 1, "not announced")
        pool.ignore_echo(mine.id)
        assert (await pool.publish(mine)).ok
        assert (await pool.publish(other)).ok
        assert await wait_until(lambda: len(got.events) >= 1)  # the relay sends in order
        assert pool.status()[0].events_in >= 2 and pool.status()[0].invalid_in == 0
    assert got.events == [other]  # the echo never reached the subscriber
    # the echo dropped; the relay may also send ``other`` twice (as stored and as live, when
    # the REQ and the publish cross), and that copy is dropped too
    assert pool.duplicates_dropped >= 1
