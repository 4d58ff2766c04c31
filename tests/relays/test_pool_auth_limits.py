"""NIP-42 against a real auth-enabled relay, and NIP-11 max_message_length honoured."""

import json

import httpx

from bot.nostr.event import sign_event
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from tests.fixtures.relay import RelayFactory
from tests.relays.conftest import FAST_BACKOFF
from tests.relays.helpers import Collector, configs, wait_until


async def test_auth_relay_accepts_the_authorised_agent(relay_factory: RelayFactory) -> None:
    agent, stranger = Keys.generate(), Keys.generate()
    relay = relay_factory(auth=True, writers=[agent.public_hex])
    async with RelayPool(configs(relay.url), keys=agent, backoff=FAST_BACKOFF) as pool:
        assert await pool.wait_connected(10)
        assert await wait_until(lambda: pool.status()[0].authenticated)
        result = await pool.publish(sign_event(agent, 1, "authorised"))
        assert result.ok, result
        status = pool.status()[0]
        assert status.authenticated and not status.auth_failed

    got = Collector()
    async with RelayPool(configs(relay.url), keys=stranger, backoff=FAST_BACKOFF) as pool:
        await pool.subscribe([{"authors": [agent.public_hex]}], got, lookback_s=600)
        refused = await pool.publish(sign_event(stranger, 1, "not allowed"), timeout_s=20)
        assert not refused.ok
        assert refused.refused[relay.url].startswith("restricted")
        assert pool.status()[0].auth_failed
        assert await wait_until(lambda: len(got.events) == 1)  # reading stays open to all


async def test_anonymous_pool_is_refused_without_crashing(relay_factory: RelayFactory) -> None:
    relay = relay_factory(auth=True)
    async with RelayPool(configs(relay.url), backoff=FAST_BACKOFF) as pool:
        result = await pool.publish(sign_event(Keys.generate(), 1, "who am I"), timeout_s=10)
        assert not result.ok and result.refused[relay.url].startswith("restricted")
        assert not pool.status()[0].authenticated


async def test_frames_over_max_message_length_are_not_sent(relay_url: str) -> None:
    limit = 2000

    def nip11(request: httpx.Request) -> httpx.Response:
        doc = {"name": "limited", "supported_nips": [1, 11],
               "limitation": {"max_message_length": limit}}
        return httpx.Response(200, content=json.dumps(doc).encode())

    keys = Keys.generate()
    async with httpx.AsyncClient(transport=httpx.MockTransport(nip11)) as http, \
            RelayPool(configs(relay_url), keys=keys, http_client=http,
                      backoff=FAST_BACKOFF) as pool:
        assert await pool.wait_connected(10)
        assert pool.status()[0].max_message_length == limit
        small = await pool.publish(sign_event(keys, 1, "fits"))
        assert small.ok
        big = await pool.publish(sign_event(keys, 1, "x" * limit))
        assert not big.ok and big.refused[relay_url].startswith("too-large")
    got = Collector()
    async with RelayPool(configs(relay_url), backoff=FAST_BACKOFF) as reader:
        await reader.subscribe([{"authors": [keys.public_hex]}], got)
        assert await wait_until(lambda: len(got.events) == 1)
    assert got.events[0].content == "fits"
