"""Askers' relay lists, looked up from a real relay: many look-ups at once share one query."""

import asyncio

from bot.agent.routing import MAX_BATCH, RelayLists
from bot.nostr import nip65
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.config import RelayConfig
from tests.fixtures.relay import RelayFactory


async def test_lookups_at_once_share_one_query_and_each_gets_its_own_lists(
        relay_url: str) -> None:
    askers = [Keys.generate() for _ in range(MAX_BATCH + 10)]
    dm_relays = {a.public_hex: [f"wss://dm{i}.example"] for i, a in enumerate(askers[:3])}
    reading = askers[3]
    async with RelayPool([RelayConfig(relay_url)]) as pool:
        assert await pool.wait_connected(10)
        for asker in askers[:3]:
            event = nip65.dm_relay_list_event(asker, dm_relays[asker.public_hex])
            assert (await pool.publish(event)).ok
        listing = nip65.relay_list_event(reading, [
            nip65.RelayListEntry("wss://read.example", read=True, write=False),
            nip65.RelayListEntry("wss://write.example", read=False, write=True)])
        assert (await pool.publish(listing)).ok

        lists = RelayLists(pool)
        assert lists.known(askers[0].public_hex, "nip17") is None
        await asyncio.gather(*(lists.lookup(a.public_hex) for a in askers),
                             *(lists.lookup(a.public_hex) for a in askers[:5]))  # asked twice
        assert lists.queries == 2  # MAX_BATCH + 10 pubkeys: two queries, not one each
        for asker in askers[:3]:
            assert lists.known(asker.public_hex, "nip17") == tuple(dm_relays[asker.public_hex])
        assert lists.known(reading.public_hex, "nip04") == ("wss://read.example",)
        assert lists.known(reading.public_hex, "nip17") == ()
        assert all(lists.known(a.public_hex, "nip17") == () for a in askers[4:])


async def test_a_lookup_no_relay_answers_is_not_taken_for_no_list(
        relay_factory: RelayFactory) -> None:
    """The read relay is down: the asker's lists stay unknown (asked again next time), not
    cached as empty for an hour; once the relay is back they are found."""
    relay, asker = relay_factory(), Keys.generate()
    async with RelayPool([RelayConfig(relay.url)]) as pool:
        assert await pool.wait_connected(10)
        assert (await pool.publish(nip65.dm_relay_list_event(asker, ["wss://dm.example"]))).ok
        relay.kill()
        lists = RelayLists(pool, timeout_s=1)
        await lists.lookup(asker.public_hex)
        assert lists.known(asker.public_hex, "nip17") is None
        relay.start()
        assert await pool.wait_connected(20)
        await lists.lookup(asker.public_hex)
        assert lists.known(asker.public_hex, "nip17") == ("wss://dm.example",)
