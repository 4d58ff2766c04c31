"""Inbox: one request per rumor however many wraps carry it, recorded with its claims; bad DMs
and floods dropped; replies built in the asker's protocol."""

import pytest

from bot.agent.guard import Guard
from bot.agent.inbox import MAX_DM_TEXT_BYTES, Inbox, build_reply, open_dm
from bot.agent.settings import ServiceConfig
from bot.nostr import nip04, nip17, nip59
from bot.nostr.errors import MalformedEvent, NostrError
from bot.nostr.event import sign_event
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from storage import Intake, RequestRecord, RequestState
from tests.relays.conftest import FAST_BACKOFF
from tests.relays.helpers import configs, wait_until


async def test_same_rumor_in_two_wraps_is_one_message(relay_url: str, intake: Intake) -> None:
    agent, asker = Keys.generate(), Keys.generate()
    rumor = nip17.chat_rumor(asker, agent.public_hex, "asked twice")
    wraps = [nip59.wrap(asker, rumor, agent.public_hex) for _ in range(2)]
    assert wraps[0].id != wraps[1].id
    bad = sign_event(Keys.generate(), 1059, "garbage", [["p", agent.public_hex]])
    forged_nip04 = sign_event(asker, 4, "not?iv=encrypted", [["p", agent.public_hex]])
    received: list[RequestRecord] = []

    async with RelayPool(configs(relay_url), keys=asker, backoff=FAST_BACKOFF) as publisher:
        for event in [*wraps, bad, forged_nip04]:
            assert (await publisher.publish(event)).ok
    async with RelayPool(configs(relay_url), keys=agent, store=intake,
                         backoff=FAST_BACKOFF) as pool:
        inbox = Inbox(pool, agent, intake, Guard(ServiceConfig()), received.append)
        await inbox.start()
        assert await wait_until(lambda: inbox.rejected == 2 and len(received) == 1)
        assert pool.status()[0].events_in == 4
    assert received[0].id == rumor.id and received[0].body == "asked twice"
    assert received[0].state is RequestState.NEW and received[0].protocol == "nip17"
    assert await intake.claim(f"rumor:{rumor.id}") is False  # recorded with its claims
    for wrap in (*wraps, bad, forged_nip04):
        assert await intake.seen(wrap.id)
    assert [r.id for r in await intake.unfinished_requests()] == [rumor.id]


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
    to_asker, to_self = build_reply(agent, "nip17", dm17.sender, dm17.message_id, "a")
    assert nip17.receive(asker, to_asker).reply_to == dm17.message_id
    assert nip17.receive(agent, to_self).text == "a"
    dm04 = open_dm(agent, sign_event(asker, 4, nip04.encrypt(
        asker.secret_hex, agent.public_hex, "q"), [["p", agent.public_hex]]))
    (reply,) = build_reply(agent, "nip04", dm04.sender, dm04.message_id, "a")
    assert reply.kind == 4 and reply.first_tag("e") == dm04.event_id
    assert nip04.decrypt(asker.secret_hex, agent.public_hex, reply.content) == "a"
    with pytest.raises(MalformedEvent):
        build_reply(agent, "nip17", dm17.sender, dm17.message_id, "")
    with pytest.raises(MalformedEvent):
        build_reply(agent, "nip17", dm17.sender, dm17.message_id, "x" * (MAX_DM_TEXT_BYTES + 1))
    longest = build_reply(agent, "nip17", dm17.sender, dm17.message_id,
                          "é" * (MAX_DM_TEXT_BYTES // 2))
    assert all(len(e.content) <= 65536 for e in longest)  # fits nostr-relay's 64 KiB limit
