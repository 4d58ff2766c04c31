"""The publisher: replies stored, published through a real relay, and marked sent once a relay
accepted them (the acceptances batched into shared writes)."""

import asyncio
from collections.abc import Sequence

from bot.agent.inbox import build_reply
from bot.agent.outbox import Publisher
from bot.agent.routing import RelayLists
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.config import RelayConfig
from storage import Database, Outbox, StorageFailure
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
        assert {item.event_id for item in await outbox.pending()} == refused  # still pending
        retry = asyncio.create_task(publisher.run())
        try:  # republished from the store (the same events), then marked sent
            assert await wait_until(lambda: publisher.published == 2 + len(refused))
            assert await publisher.flush(10) == 0
        finally:
            retry.cancel()
        # the wraps are signed by one-time keys: addressed to the asker and the agent's copy
        stored = await pool.fetch([{"#p": [asker.public_hex, agent.public_hex]}], timeout_s=5)
        assert {e.id for e in stored} == ids  # the same events, no second encryption
