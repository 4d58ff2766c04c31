"""One-shot queries across relays, and publishing to relays outside the pool."""

from bot.nostr import nip65
from bot.nostr.event import sign_event
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from tests.fixtures.relay import RelayFactory
from tests.relays.conftest import FAST_BACKOFF
from tests.relays.helpers import Collector, configs


async def test_fetch_profile_and_dm_relays_from_two_relays(relay_factory: RelayFactory) -> None:
    first, second = relay_factory(), relay_factory()
    asker, agent = Keys.generate(), Keys.generate()
    profile = sign_event(asker, 0, '{"name":"asker","lud16":"asker@example.com"}')
    inbox = nip65.dm_relay_list_event(asker, [second.url])
    async with RelayPool(configs(first.url, second.url), keys=asker,
                         backoff=FAST_BACKOFF) as publisher:
        assert (await publisher.publish(profile, wait_all=True)).ok
        assert (await publisher.publish_to(inbox, [second.url])).accepted == (second.url,)

    handled = Collector()
    async with RelayPool(configs(first.url, second.url), keys=agent,
                         backoff=FAST_BACKOFF) as pool:
        await pool.subscribe([{"authors": [asker.public_hex]}], handled)
        assert await pool.wait_connected(10, all_relays=True)
        found = await pool.fetch([{"kinds": [0, 10050], "authors": [asker.public_hex]}])
        assert sorted(e.id for e in found) == sorted([profile.id, inbox.id])  # deduplicated
        assert nip65.parse_dm_relays(next(e for e in found if e.kind == 10050)) == [second.url]
        assert await pool.fetch([{"kinds": [0], "authors": [Keys.generate().public_hex]}]) == []


async def test_publish_to_relays_outside_the_pool(relay_factory: RelayFactory) -> None:
    ours, theirs = relay_factory(), relay_factory()
    agent = Keys.generate()
    event = sign_event(agent, 1, "to the recipient's inbox relay")
    async with RelayPool(configs(ours.url), keys=agent, backoff=FAST_BACKOFF) as pool:
        result = await pool.publish_to(event, [theirs.url, ours.url, "https://not-a-relay"])
        assert set(result.accepted) == {theirs.url, ours.url}
        assert result.refused["https://not-a-relay"].startswith("invalid")
        assert len(pool.status()) == 1  # the outside relay was not added to the pool
    async with RelayPool(configs(theirs.url), backoff=FAST_BACKOFF) as reader:
        assert [e.id for e in await reader.fetch([{"ids": [event.id]}])] == [event.id]
