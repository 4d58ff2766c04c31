"""rate-limited:, auth-required: (OK and CLOSED), NOTICE and garbage frames, over real sockets."""

from bot.nostr.event import sign_event
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from tests.relays.conftest import FAST_BACKOFF
from tests.relays.helpers import Collector, configs, wait_until
from tests.relays.scripted_relay import Script, scripted_relay


async def test_rate_limited_is_retried() -> None:
    keys = Keys.generate()
    async with scripted_relay(Script(rate_limit_first=True)) as script, \
            RelayPool(configs(script.url), keys=keys, backoff=FAST_BACKOFF) as pool:
        event = sign_event(keys, 1, "patience")
        result = await pool.publish(event, timeout_s=10)
        assert result.ok
        assert script.rate_limited == 1 and script.events == [event]


async def test_auth_required_publish_and_subscription() -> None:
    keys, author = Keys.generate(), Keys.generate()
    stored = sign_event(author, 1, "members only")
    async with scripted_relay(Script(require_auth=True, events=[stored])) as script:
        got = Collector()
        async with RelayPool(configs(script.url), keys=keys, backoff=FAST_BACKOFF) as pool:
            await pool.subscribe([{"kinds": [1]}], got)
            assert await wait_until(lambda: len(got.events) == 1)
            result = await pool.publish(sign_event(keys, 1, "after auth"))
            assert result.ok
            assert pool.status()[0].authenticated and not pool.status()[0].auth_failed
        assert keys.public_hex in script.authed
        assert got.events == [stored]


async def test_auth_required_without_keys_is_a_clear_refusal() -> None:
    async with scripted_relay(Script(require_auth=True)) as script:
        got = Collector()
        async with RelayPool(configs(script.url), backoff=FAST_BACKOFF) as pool:
            await pool.subscribe([{"kinds": [1]}], got)
            assert await wait_until(lambda: script.closed_sent == 1)
            result = await pool.publish(sign_event(Keys.generate(), 1, "anon"), timeout_s=5)
            assert not result.ok
            assert result.refused[script.url].startswith("auth-required")
            status = pool.status()[0]
            assert status.auth_failed and status.last_error is not None
            assert "CLOSED" in status.last_error or "auth" in status.last_error


async def test_garbage_frames_and_notices_are_survived() -> None:
    author = Keys.generate()
    stored = sign_event(author, 1, "after the noise")
    async with scripted_relay(Script(garbage_first=True, events=[stored])) as script:
        got = Collector()
        async with RelayPool(configs(script.url), backoff=FAST_BACKOFF) as pool:
            await pool.subscribe([{"kinds": [1]}], got)
            assert await wait_until(lambda: len(got.events) == 1)
            assert pool.status()[0].invalid_in == 3
            assert pool.status()[0].connects == 1


async def test_events_outside_the_filter_are_dropped() -> None:
    author = Keys.generate()
    wanted = sign_event(author, 1, "asked for")
    slipped = sign_event(author, 7, "+")  # this scripted relay ignores filters
    async with scripted_relay(Script(events=[wanted, slipped])) as script:
        got = Collector()
        async with RelayPool(configs(script.url), backoff=FAST_BACKOFF) as pool:
            await pool.subscribe([{"kinds": [1], "authors": [author.public_hex]}], got)
            assert await wait_until(lambda: pool.status()[0].invalid_in == 1)
            assert await wait_until(lambda: len(got.events) == 1)
        assert got.events == [wanted]
