"""Interop with nostr-sdk (rust-nostr), code nobody here wrote, through a real relay.

nostr-sdk sends NIP-04 and NIP-17 DMs; our pool + inbox decrypt and record them; our replies,
built by ``build_reply`` and published by our pool, are fetched and decrypted by nostr-sdk. Both
directions, both protocols.
"""

from collections.abc import AsyncIterator
from datetime import timedelta

import nostr_sdk as sdk
import pytest

from bot.agent.guard import Guard
from bot.agent.inbox import Inbox, build_reply
from bot.agent.settings import ServiceConfig
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from storage import Intake, RequestRecord
from tests.relays.conftest import FAST_BACKOFF
from tests.relays.helpers import configs, wait_until


@pytest.fixture
async def sdk_client(relay_url: str) -> AsyncIterator[tuple[sdk.Client, sdk.Keys]]:
    keys = sdk.Keys.generate()
    client = sdk.Client()
    await client.add_relay(sdk.RelayUrl.parse(relay_url))
    await client.connect()
    try:
        yield client, keys
    finally:
        await client.shutdown()


async def _sdk_fetch(client: sdk.Client, me: sdk.Keys, kind: int) -> list[sdk.Event]:
    flt = sdk.Filter().pubkey(me.public_key()).kinds([sdk.Kind(kind)])
    events: list[sdk.Event] = await client.fetch_events(
        sdk.ReqTarget.auto([flt]), timedelta(seconds=5))
    return events


async def test_nip04_both_directions(relay_url: str, intake: Intake,
                                     sdk_client: tuple[sdk.Client, sdk.Keys]) -> None:
    client, their_keys = sdk_client
    agent = Keys.generate()
    agent_pk = sdk.PublicKey.parse(agent.public_hex)
    received: list[RequestRecord] = []

    async with RelayPool(configs(relay_url), keys=agent, store=intake,
                         backoff=FAST_BACKOFF) as pool:
        inbox = Inbox(pool, agent, intake, Guard(ServiceConfig()), received.append)
        await inbox.start()
        assert await pool.wait_connected(10)
        question = "what is a zap? ⚡ (nip04)"
        ciphertext = their_keys.nip04_encrypt(agent_pk, question)
        event = (sdk.EventBuilder(sdk.Kind(4), ciphertext)
                 .tags([sdk.Tag.public_key(agent_pk)]).finalize(their_keys))
        await client.send_event(event)
        assert await wait_until(lambda: len(received) == 1)
        dm = received[0]
        assert dm.protocol == "nip04" and dm.body == question
        assert dm.sender == their_keys.public_key().to_hex()

        results = [await pool.publish(e) for e in build_reply(
            agent, dm.protocol, dm.sender, dm.reply_to, "a tip in sats, sent over Lightning 🙂")]
        assert all(r.ok for r in results)

    replies = await _sdk_fetch(client, their_keys, 4)
    assert len(replies) == 1
    reply = replies[0]
    assert reply.verify() and reply.author().to_hex() == agent.public_hex
    text = their_keys.nip04_decrypt(sdk.PublicKey.parse(agent.public_hex), reply.content())
    assert text == "a tip in sats, sent over Lightning 🙂"


async def test_nip17_both_directions(relay_url: str, intake: Intake,
                                     sdk_client: tuple[sdk.Client, sdk.Keys]) -> None:
    client, their_keys = sdk_client
    agent = Keys.generate()
    agent_pk = sdk.PublicKey.parse(agent.public_hex)
    received: list[RequestRecord] = []

    async with RelayPool(configs(relay_url), keys=agent, store=intake,
                         backoff=FAST_BACKOFF) as pool:
        inbox = Inbox(pool, agent, intake, Guard(ServiceConfig()), received.append)
        await inbox.start()
        assert await pool.wait_connected(10)
        question = "explain NIP-17 in one line, s'il vous plaît"
        wrap = sdk.nip17_make_private_msg(their_keys, agent_pk, question)
        await client.send_event(wrap)
        assert await wait_until(lambda: len(received) == 1)
        dm = received[0]
        assert dm.protocol == "nip17" and dm.body == question
        assert dm.sender == their_keys.public_key().to_hex()

        results = [await pool.publish(e) for e in build_reply(
            agent, dm.protocol, dm.sender, dm.reply_to,
            "gift-wrapped DMs: sealed, wrapped, and private")]
        assert len(results) == 2 and all(r.ok for r in results)
        # our self copy comes back through our own subscription and is not a new message
        assert await wait_until(lambda: inbox.own_skipped >= 1)
        assert len(received) == 1

    wraps = await _sdk_fetch(client, their_keys, 1059)
    assert len(wraps) == 1
    unwrapped = sdk.UnwrappedGift.from_gift_wrap(their_keys, wraps[0])
    assert unwrapped.sender().to_hex() == agent.public_hex
    rumor = unwrapped.rumor()
    assert rumor.kind().as_u16() == 14
    assert rumor.content() == "gift-wrapped DMs: sealed, wrapped, and private"
