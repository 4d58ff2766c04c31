"""The dispatcher: different authors' events are handled side by side, one author's in arrival
order, and a cursor never moves past an event whose handler has not finished."""

import asyncio
import time

from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.pool import LIVE_MARGIN_S
from storage import Intake
from tests.relays.conftest import FAST_BACKOFF
from tests.relays.helpers import configs, wait_until

GUARD_S = 20.0


async def test_authors_side_by_side_one_author_in_order(relay_url: str) -> None:
    first, second, probe = Keys.generate(), Keys.generate(), Keys.generate()
    started: list[str] = []
    finished: list[str] = []
    second_done, live = asyncio.Event(), asyncio.Event()

    async def handler(event: Event, relay: str) -> None:
        if event.pubkey == probe.public_hex:  # the subscription is open on the relay
            live.set()
            return
        started.append(event.content)
        if event.content == "first 1":  # held until the other author's event was handled
            await asyncio.wait_for(second_done.wait(), GUARD_S)
        finished.append(event.content)
        if event.pubkey == second.public_hex:
            second_done.set()

    async with RelayPool(configs(relay_url), backoff=FAST_BACKOFF) as pool, \
            RelayPool(configs(relay_url), backoff=FAST_BACKOFF) as publisher:
        await pool.subscribe([{"authors": [first.public_hex, second.public_hex,
                                           probe.public_hex]}], handler)
        assert await pool.wait_connected(10) and await publisher.wait_connected(10)
        # Published before the subscription reached the relay, the three would come back as
        # stored events, newest first: out of the order under test. Once the probe is handled,
        # they arrive live, in the order they are published.
        assert (await publisher.publish(sign_event(probe, 1, "probe"))).ok
        await asyncio.wait_for(live.wait(), GUARD_S)
        for keys, text in ((first, "first 1"), (first, "first 2"), (second, "second")):
            assert (await publisher.publish(sign_event(keys, 1, text))).ok
        assert await wait_until(lambda: len(finished) == 3)
    assert finished == ["second", "first 1", "first 2"]
    assert started.index("first 2") > finished.index("first 1")  # never before its elder
    assert pool.handler_errors == 0


async def test_a_checkpoint_waits_for_the_handlers_before_it(relay_url: str,
                                                            intake: Intake) -> None:
    author = Keys.generate()
    now = [time.time()]
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(event: Event, relay: str) -> None:
        entered.set()
        await asyncio.wait_for(release.wait(), GUARD_S)

    async with RelayPool(configs(relay_url), store=intake, backoff=FAST_BACKOFF,
                         checkpoint_interval_s=0.05, clock=lambda: now[0]) as pool, \
            RelayPool(configs(relay_url), backoff=FAST_BACKOFF) as publisher:
        await pool.subscribe([{"authors": [author.public_hex]}], slow)
        assert await pool.wait_connected(10) and await publisher.wait_connected(10)
        assert (await publisher.publish(sign_event(author, 1, "held"))).ok
        await asyncio.wait_for(entered.wait(), GUARD_S)
        now[0] += 1000  # any checkpoint queued from now on is past the held event
        later = int(now[0]) - LIVE_MARGIN_S
        await asyncio.sleep(0.5)  # ten checkpoint periods
        cursor = await intake.cursor(relay_url)
        assert cursor is None or cursor < later
        release.set()
        for _ in range(400):  # the next checkpoint, once the handler is done
            if await intake.cursor(relay_url) == later:
                break
            await asyncio.sleep(0.05)
        assert await intake.cursor(relay_url) == later
    assert pool.handler_errors == 0
