"""NIP-59 gift wraps and NIP-17 DMs: official examples unwrap; every broken layer is refused."""

import json
import time
from typing import Any

import pytest

from bot.nostr import nip17, nip44, nip59
from bot.nostr.errors import GiftWrapError
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from tests.nostr.vectors import load

EXAMPLES: dict[str, Any] = load("giftwrap_examples.json")


def test_nip59_example_unwraps_to_its_rumor() -> None:
    ex = EXAMPLES["nip59_example"]
    assert Keys.from_hex(ex["author_sk"]).public_hex == ex["author_pk"]
    opened = nip59.unwrap(Keys.from_hex(ex["recipient_sk"]), Event.from_dict(ex["wrap"]))
    assert opened.rumor.to_dict() == ex["rumor"]
    assert opened.seal.to_dict() == ex["seal"]
    assert opened.sender == ex["author_pk"]
    assert opened.wrap.pubkey == ex["ephemeral_pk"]


def test_nip17_example_both_wraps_give_the_same_rumor() -> None:
    ex = EXAMPLES["nip17_example"]
    receiver = Keys.from_nsec(ex["receiver_nsec"])
    sender = Keys.from_nsec(ex["sender_nsec"])
    assert receiver.secret_hex == ex["receiver_sk"] and sender.public_hex == ex["sender_pk"]
    to_receiver = nip59.unwrap(receiver, Event.from_dict(ex["wrap_to_receiver"]))
    to_sender = nip59.unwrap(sender, Event.from_dict(ex["wrap_to_sender"]))
    assert to_receiver.seal.to_dict() == ex["decrypted_seal_to_receiver"]
    assert to_sender.seal.to_dict() == ex["decrypted_seal_to_sender"]
    assert to_receiver.rumor.to_dict() == ex["decrypted_rumor"]
    assert to_sender.rumor == to_receiver.rumor
    message = nip17.read_message(to_receiver)
    assert message.text == ex["decrypted_rumor"]["content"]
    assert message.sender == ex["sender_pk"]
    assert message.recipients == (ex["receiver_pk"],)
    # the self-copy is dated before its rumor: randomized timestamps, as the NIP asks
    assert to_sender.wrap.created_at < to_sender.rumor.created_at


def test_wrong_recipient_cannot_unwrap() -> None:
    ex = EXAMPLES["nip17_example"]
    with pytest.raises(GiftWrapError):
        nip59.unwrap(Keys.generate(), Event.from_dict(ex["wrap_to_receiver"]))


def test_reply_to_recipient_and_self_copy() -> None:
    me, them = Keys.generate(), Keys.generate()
    now = int(time.time())
    out = nip17.private_message(me, them.public_hex, "answer ⚡", reply_to="ab" * 32)
    got = nip17.receive(them, out.to_recipient)
    mine = nip17.receive(me, out.to_self)
    assert got.text == mine.text == "answer ⚡"
    assert got.rumor_id == mine.rumor_id == out.rumor.id
    assert got.sender == me.public_hex and got.reply_to == "ab" * 32
    assert out.to_recipient.first_tag("p") == them.public_hex
    assert out.to_self.first_tag("p") == me.public_hex
    for wrap in (out.to_recipient, out.to_self):
        assert wrap.kind == 1059 and wrap.pubkey not in (me.public_hex, them.public_hex)
        assert now - nip59.MAX_TIMESTAMP_SHIFT_S - 5 <= wrap.created_at <= now + 5
    opened = nip59.unwrap(them, out.to_recipient)
    assert now - nip59.MAX_TIMESTAMP_SHIFT_S - 5 <= opened.seal.created_at <= now + 5
    assert opened.rumor.created_at >= now  # the rumor carries the real time
    assert out.to_recipient.pubkey != out.to_self.pubkey  # a fresh one-time key per wrap


def test_timestamps_are_spread_over_two_days() -> None:
    now = 1_800_000_000
    stamps = {nip59.random_past_timestamp(now) for _ in range(200)}
    assert all(now - nip59.MAX_TIMESTAMP_SHIFT_S <= t <= now for t in stamps)
    assert len(stamps) > 150 and max(stamps) - min(stamps) > 3600


def _forged_seal(signer: Keys, rumor: nip59.Rumor, recipient: str, kind: int = 13) -> Event:
    conv = nip44.conversation_key(signer.secret_hex, recipient)
    return sign_event(signer, kind, nip44.encrypt(rumor.to_json(), conv))


def test_seal_signer_must_be_rumor_author() -> None:
    victim, attacker, me = Keys.generate(), Keys.generate(), Keys.generate()
    rumor = nip59.Rumor.create(victim.public_hex, 14, "pay the attacker", [["p", me.public_hex]])
    wrap = nip59.gift_wrap(_forged_seal(attacker, rumor, me.public_hex), me.public_hex)
    with pytest.raises(GiftWrapError, match="author"):
        nip59.unwrap(me, wrap)
    with pytest.raises(GiftWrapError):
        nip59.seal(attacker, rumor, me.public_hex)


def test_seal_of_wrong_kind_and_wrap_of_wrong_kind() -> None:
    author, me = Keys.generate(), Keys.generate()
    rumor = nip59.Rumor.create(author.public_hex, 14, "hi")
    wrap = nip59.gift_wrap(_forged_seal(author, rumor, me.public_hex, kind=1), me.public_hex)
    with pytest.raises(GiftWrapError, match="seal"):
        nip59.unwrap(me, wrap)
    plain = sign_event(author, 1, "not a wrap")
    with pytest.raises(GiftWrapError):
        nip59.unwrap(me, plain)


def test_seal_with_bad_signature_is_refused() -> None:
    author, me = Keys.generate(), Keys.generate()
    good = nip59.seal(author, nip59.Rumor.create(author.public_hex, 14, "hi"), me.public_hex)
    other = sign_event(author, 13, "x")
    tampered = json.dumps(good.to_dict() | {"sig": other.sig})
    one_time = Keys.generate()
    content = nip44.encrypt(tampered, nip44.conversation_key(one_time.secret_hex, me.public_hex))
    wrap = sign_event(one_time, 1059, content, [["p", me.public_hex]])
    with pytest.raises(GiftWrapError, match="seal"):
        nip59.unwrap(me, wrap)


def _wrap_raw(seal_plaintext: str, me: Keys) -> Event:
    one_time = Keys.generate()
    conv = nip44.conversation_key(one_time.secret_hex, me.public_hex)
    return sign_event(one_time, 1059, nip44.encrypt(seal_plaintext, conv), [["p", me.public_hex]])


@pytest.mark.parametrize("rumor_text", ["not json", "[]", '{"pubkey": 5}', "{}"])
def test_bad_rumor_is_refused(rumor_text: str) -> None:
    author, me = Keys.generate(), Keys.generate()
    conv = nip44.conversation_key(author.secret_hex, me.public_hex)
    seal_event = sign_event(author, 13, nip44.encrypt(rumor_text, conv))
    with pytest.raises(GiftWrapError):
        nip59.unwrap(me, _wrap_raw(seal_event.to_json(), me))


def test_rumor_with_forged_id_is_refused() -> None:
    author, me = Keys.generate(), Keys.generate()
    rumor = nip59.Rumor.create(author.public_hex, 14, "hi").to_dict() | {"id": "00" * 32}
    conv = nip44.conversation_key(author.secret_hex, me.public_hex)
    seal_event = sign_event(author, 13, nip44.encrypt(json.dumps(rumor), conv))
    with pytest.raises(GiftWrapError, match="id"):
        nip59.unwrap(me, _wrap_raw(seal_event.to_json(), me))


@pytest.mark.parametrize("seal_text", ["garbage", "{}", "[1,2]"])
def test_bad_seal_is_refused(seal_text: str) -> None:
    me = Keys.generate()
    with pytest.raises(GiftWrapError):
        nip59.unwrap(me, _wrap_raw(seal_text, me))


def test_wrap_content_not_nip44() -> None:
    me, one_time = Keys.generate(), Keys.generate()
    wrap = sign_event(one_time, 1059, "hello?iv=abc", [["p", me.public_hex]])
    with pytest.raises(GiftWrapError):
        nip59.unwrap(me, wrap)


def test_non_chat_rumor_is_not_a_message() -> None:
    me, them = Keys.generate(), Keys.generate()
    rumor = nip59.Rumor.create(them.public_hex, 7, "+")
    with pytest.raises(GiftWrapError):
        nip17.receive(me, nip59.wrap(them, rumor, me.public_hex))
