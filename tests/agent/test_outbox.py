"""The publisher: replies stored, published through a real relay, and marked sent once a relay
accepted them (the acceptances batched into shared writes)."""

import asyncio

from bot.agent.inbox import build_reply
from bot.agent.outbox import Publisher
from bot.agent.routing import RelayLists
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.config import RelayConfig
from storage import Database, Outbox
from tests.relays.helpers import wait_until


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
