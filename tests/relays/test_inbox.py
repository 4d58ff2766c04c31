"""Inbox: one message per rumor however many wraps carry it; bad DMs dropped; replies built in
the asker's protocol."""

import pytest

from bot.nostr import nip04, nip17, nip59
from bot.nostr.errors import MalformedEvent, NostrError
from bot.nostr.event import sign_event
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.inbox import MAX_DM_TEXT_BYTES, DirectMessage, Inbox, build_reply, open_dm
from storage import Intake
from tests.relays.conftest import FAST_BACKOFF
from tests.relays.helpers import configs, wait_until


async def test_same_rumor_in_two_wraps_is_one_message(relay_url: str, intake: Intake) -> None:
    agent, asker = Keys.generate(), Keys.generate()
    rumor = nip17.chat_rumor(asker, agent.public_hex, "asked twice")
    wraps = [nip59.wrap(asker, rumor, agent.public_hex) for _ in range(2)]
    assert wraps[0].id != wraps[1].id
    bad = sign_event(Keys.generate(), 1059, "garbage", [["p", agent.public_hex]])
    forged_nip04 = sign_event(asker, 4, "not?iv=encrypted", [["p", agent.public_hex]])
    received: list[DirectMessage] = []

    async def handle(dm: DirectMessage) -> None:
        received.append(dm)

    async with RelayPool(configs(relay_url), keys=asker, backoff=FAST_BACKOFF) as publisher:
        for event in [*wraps, bad, forged_nip04]:
            assert (await publisher.publish(event)).ok
    async with RelayPool(configs(relay_url), keys=agent, store=intake,
                         backoff=FAST_BACKOFF) as pool:
        inbox = Inbox(pool, agent, handle)
        await inbox.start()
        assert await wait_until(lambda: inbox.rejected == 2 and len(received) == 1)
        assert pool.status()[0].events_in == 4
    assert received[0].message_id == rumor.id and received[0].text == "asked twice"
    assert await intake.claim(f"rumor:{rumor.id}") is False  # the durable layer has it


def test_open_dm_checks() -> None:
    agent, asker = Keys.generate(), Keys.generate()
    text = nip04.encrypt(asker.secret_hex, agent.public_hex, "hi")
    to_other = sign_event(asker, 4, text, [["p", Keys.generate().public_hex]])
    with pytest.raises(MalformedEvent):
        open_dm(agent, to_other)
    with pytest.raises(NostrError):
        open_dm(agent, sign_event(asker, 1, "a note"))
    dm = open_dm(agent, sign_event(asker, 4, text, [["p", agent.public_hex]]), "ws://r")
    assert (dm.protocol, dm.sender, dm.text, dm.relay_url) == ("nip04", asker.public_hex, "hi",
                                                               "ws://r")


def test_build_reply_protocols_and_limits() -> None:
    agent, asker = Keys.generate(), Keys.generate()
    wrap = nip17.private_message(asker, agent.public_hex, "q").to_recipient
    dm17 = open_dm(agent, wrap)
    to_asker, to_self = build_reply(agent, dm17, "a")
    assert nip17.receive(asker, to_asker).reply_to == dm17.message_id
    assert nip17.receive(agent, to_self).text == "a"
    dm04 = open_dm(agent, sign_event(asker, 4, nip04.encrypt(
        asker.secret_hex, agent.public_hex, "q"), [["p", agent.public_hex]]))
    (reply,) = build_reply(agent, dm04, "a")
    assert reply.kind == 4 and reply.first_tag("e") == dm04.event_id
    assert nip04.decrypt(asker.secret_hex, agent.public_hex, reply.content) == "a"
    with pytest.raises(MalformedEvent):
        build_reply(agent, dm17, "")
    with pytest.raises(MalformedEvent):
        build_reply(agent, dm17, "x" * (MAX_DM_TEXT_BYTES + 1))
    longest = build_reply(agent, dm17, "é" * (MAX_DM_TEXT_BYTES // 2))
    assert all(len(e.content) <= 65536 for e in longest)  # fits nostr-relay's 64 KiB limit
