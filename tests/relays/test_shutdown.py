"""Stopping never waits forever: a lost cancellation, a dead or frozen relay, a handler that never
returns. Every stop runs under a generous ``asyncio.wait_for`` bound that only guards against a
hang (it asserts that the call returns, not how fast)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from bot.relays.pool import RelayPool
from bot.relays.status import RelayState
from bot.relays.tasks import cancel_and_wait
from tests.fixtures.relay import RelayFactory, RelayProcess
from tests.relays.conftest import FAST_BACKOFF
from tests.relays.helpers import Collector, configs, wait_until

HANG_GUARD_S = 60.0


async def test_a_cancellation_lost_in_wait_for_is_repeated() -> None:
    """On 3.11, ``wait_for`` returns the result when the awaited future completes in the same
    loop turn as the cancel: a polling loop around it survives one ``cancel()``."""
    answer = asyncio.get_running_loop().create_future()
    rounds = 0

    async def poller() -> None:
        nonlocal rounds
        while True:
            await asyncio.wait_for(asyncio.shield(answer), 10.0)
            rounds += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(poller())
    await asyncio.sleep(0.01)  # the poller now waits in wait_for
    answer.set_result("ok")
    task.cancel()  # same loop turn as the answer
    assert await asyncio.wait_for(cancel_and_wait(task), HANG_GUARD_S)
    assert task.cancelled()
    assert rounds >= 1  # the first cancel was indeed lost; a bare `await task` would hang


async def test_a_task_that_refuses_to_stop_is_given_up_on() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await asyncio.wait_for(cancel_and_wait(task, timeout_s=0.5), HANG_GUARD_S) is False
    assert not task.done()
    release.set()
    assert await asyncio.wait_for(cancel_and_wait(task), HANG_GUARD_S)
    assert await cancel_and_wait(None)


@contextmanager
def frozen(relay: RelayProcess) -> Iterator[None]:
    """SIGSTOP the relay's processes: sockets stay open, nothing is read or answered."""
    assert relay.pid is not None
    os.killpg(relay.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(relay.pid, signal.SIGCONT)


async def test_pool_stops_while_its_relay_is_frozen(relay_factory: RelayFactory) -> None:
    relay = relay_factory()
    pool = RelayPool(configs(relay.url), backoff=FAST_BACKOFF, ping_interval_s=None)
    await pool.start()
    try:
        assert await pool.wait_connected(20.0)
        await pool.subscribe([{"kinds": [1], "authors": [Keys.generate().public_hex]}],
                             Collector())
        with frozen(relay):
            # a publish that will never get its OK is in flight in the background
            event = sign_event(Keys.generate(), 1, "into the void")
            publishing = asyncio.create_task(pool.publish(event, timeout_s=3600.0))
            await asyncio.sleep(0.2)
            await asyncio.wait_for(pool.stop(), HANG_GUARD_S)
            result = await asyncio.wait_for(publishing, HANG_GUARD_S)
            assert not result.ok
    finally:
        await asyncio.wait_for(pool.stop(), HANG_GUARD_S)


async def test_pool_stops_after_its_relay_was_killed(relay_factory: RelayFactory) -> None:
    relay = relay_factory()
    pool = RelayPool(configs(relay.url), backoff=FAST_BACKOFF)
    await pool.start()
    try:
        assert await pool.wait_connected(20.0)
        relay.kill()
        assert await wait_until(lambda: pool.status()[0].state is not RelayState.CONNECTED)
    finally:
        await asyncio.wait_for(pool.stop(), HANG_GUARD_S)
    assert pool.status()[0].state is RelayState.STOPPED


async def test_pool_stop_does_not_wait_for_a_handler_that_never_returns(
    relay_url: str,
) -> None:
    author = Keys.generate()
    entered = asyncio.Event()
    never = asyncio.Event()

    async def stuck(event: Event, relay: str) -> None:
        entered.set()
        await never.wait()  # e.g. a consumer that is gone, behind a full queue

    pool = RelayPool(configs(relay_url), backoff=FAST_BACKOFF, drain_timeout_s=0.5)
    await pool.start()
    try:
        assert await pool.wait_connected(20.0)
        await pool.subscribe([{"kinds": [1], "authors": [author.public_hex]}], stuck)
        assert (await pool.publish(sign_event(author, 1, "stuck"))).ok
        await asyncio.wait_for(entered.wait(), HANG_GUARD_S)
    finally:
        await asyncio.wait_for(pool.stop(), HANG_GUARD_S)
