"""Random and mutated input through parse → verify → decrypt: a typed error or a correct result,
never another exception."""

import base64
import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.nostr import nip04, nip17, nip19, nip44, nip59
from bot.nostr.errors import NostrError
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

ME = Keys.from_hex("11" * 32)
PEER = Keys.from_hex("22" * 32)
VALID = sign_event(PEER, 4, nip04.encrypt(PEER.secret_hex, ME.public_hex, "hello"),
                   [["p", ME.public_hex]], created_at=1_700_000_000)
CONV = nip44.conversation_key(ME.secret_hex, PEER.public_hex)
NIP44_PAYLOAD = nip44.encrypt("fuzz me", CONV)
EPHEMERAL = Keys.from_hex("33" * 32)
WRAP = nip59.gift_wrap(
    nip59.seal(PEER, nip17.chat_rumor(PEER, ME.public_hex, "wrapped"), ME.public_hex),
    ME.public_hex, ephemeral=EPHEMERAL)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _full_pipeline(raw: str | bytes) -> None:
    """What the agent does with an incoming event; anything but a NostrError is a bug."""
    try:
        event = Event.from_json(raw)
        if event.kind == 4:
            nip04.decrypt(ME.secret_hex, event.pubkey, event.content)
        elif event.kind == 1059:
            nip17.receive(ME, event)
    except NostrError:
        pass


@SETTINGS
@given(json_values)
def test_random_json_values(value: Any) -> None:
    try:
        text = json.dumps(value)
    except ValueError:
        return
    _full_pipeline(text)


@SETTINGS
@given(st.sampled_from(["id", "pubkey", "created_at", "kind", "tags", "content", "sig"]),
       json_values)
def test_mutated_field(field: str, value: Any) -> None:
    raw = VALID.to_dict() | {field: value}
    try:
        event = Event.from_dict(raw)
    except NostrError:
        return
    assert event == VALID  # only an unchanged event may pass


@SETTINGS
@given(st.data())
def test_mutated_bytes(data: st.DataObject) -> None:
    text = bytearray(VALID.to_json().encode())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text) - 1))
        text[pos] = data.draw(st.integers(0, 255))
    try:
        event = Event.from_json(bytes(text))
    except NostrError:
        return
    assert event.id == VALID.id and event.sig == VALID.sig  # e.g. whitespace or key order only


@SETTINGS
@given(st.text(max_size=400))
def test_random_nip44_payloads(payload: str) -> None:
    with contextlib.suppress(NostrError):
        nip44.decrypt(payload, CONV)


@SETTINGS
@given(st.integers(0, 10_000), st.integers(0, 255))
def test_mutated_nip44_payload(position: int, byte: int) -> None:
    raw = bytearray(base64.b64decode(NIP44_PAYLOAD))
    position %= len(raw)
    changed = raw[position] != byte
    raw[position] = byte
    try:
        out = nip44.decrypt(base64.b64encode(bytes(raw)).decode(), CONV)
    except NostrError:
        assert changed
        return
    assert not changed and out == "fuzz me"


@SETTINGS
@given(st.text(max_size=300))
def test_random_nip04_payloads(content: str) -> None:
    with contextlib.suppress(NostrError):
        nip04.decrypt(ME.secret_hex, PEER.public_hex, content)


@SETTINGS
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()))
def test_signed_wraps_with_random_content(content: str) -> None:
    wrap = sign_event(PEER, 1059, content, [["p", ME.public_hex]])
    _full_pipeline(wrap.to_json())


@SETTINGS
@given(st.integers(0, 10_000), st.integers(0, 255))
def test_resigned_wrap_with_mutated_payload(position: int, byte: int) -> None:
    raw = bytearray(base64.b64decode(WRAP.content))
    position %= len(raw)
    changed = raw[position] != byte
    raw[position] = byte
    wrap = sign_event(EPHEMERAL, 1059, base64.b64encode(bytes(raw)).decode(), WRAP.tags)
    try:
        opened = nip59.unwrap(ME, wrap)
    except NostrError:
        assert changed
        return
    assert not changed and opened.rumor.content == "wrapped"


@SETTINGS
@given(st.text(max_size=200))
def test_random_bech32(text: str) -> None:
    for candidate in (text, "npub1" + text, "nprofile1" + text):
        with contextlib.suppress(NostrError):
            nip19.decode(candidate)
