"""Keys: hex and nsec forms, npub, signing, and the secret kept out of repr."""

import coincurve
import pytest

from bot.nostr import nip44
from bot.nostr.errors import InvalidKey
from bot.nostr.keys import MAX_CONVERSATIONS, Keys, parse_public_key

NSEC = "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5"
NSEC_HEX = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"


def test_from_nsec_matches_nip19_example() -> None:
    keys = Keys.from_nsec(NSEC)
    assert keys.secret_hex == NSEC_HEX
    assert keys.nsec == NSEC
    assert Keys.parse(NSEC) == keys
    assert Keys.parse(NSEC_HEX.upper()) == keys
    assert parse_public_key(keys.npub) == keys.public_hex


def test_secret_never_in_repr_or_str() -> None:
    keys = Keys.generate()
    for text in (repr(keys), str(keys), f"{keys}"):
        assert keys.secret_hex not in text
        assert keys.nsec not in text
    assert keys.public_hex in repr(keys)


def test_signature_verifies_with_coincurve() -> None:
    keys = Keys.generate()
    msg = bytes(range(32))
    sig = bytes.fromhex(keys.sign(msg))
    assert coincurve.PublicKeyXOnly(bytes.fromhex(keys.public_hex)).verify(sig, msg)
    with pytest.raises(ValueError):
        keys.sign(b"short")


@pytest.mark.parametrize(
    "bad", ["", "zz" * 32, "00" * 32, "ff" * 32, "ab" * 31, NSEC[:-1] + "x", "npub1xyz", None, 7]
)
def test_bad_secrets_raise_invalid_key(bad: object) -> None:
    with pytest.raises(InvalidKey):
        Keys.parse(bad)  # type: ignore[arg-type]


def test_secret_not_in_error_message() -> None:
    secret = "ff" * 32  # above the curve order
    with pytest.raises(InvalidKey) as info:
        Keys.from_hex(secret)
    assert secret not in str(info.value)


@pytest.mark.parametrize("bad", ["", "npub1qqqq", "xyz", "ab" * 33, None])
def test_bad_public_keys(bad: object) -> None:
    with pytest.raises(InvalidKey):
        parse_public_key(bad)  # type: ignore[arg-type]


def test_conversation_keys_are_nip44s_and_kept_for_the_latest_peers() -> None:
    me = Keys.from_hex(NSEC_HEX)
    peers = [Keys.generate().public_hex for _ in range(MAX_CONVERSATIONS + 1)]
    for peer in peers:
        assert me.conversation_key(peer) == nip44.conversation_key(me.secret_hex, peer)
    assert me.conversation_key(peers[0]) == nip44.conversation_key(me.secret_hex, peers[0])
    kept = me._conversations
    assert len(kept) == MAX_CONVERSATIONS
    assert peers[1] not in kept and peers[0] in kept and peers[-1] in kept
    assert list(kept)[-1] == peers[0]  # the most recently used last
    with pytest.raises(InvalidKey):
        me.conversation_key("zz" * 32)
    assert len(kept) == MAX_CONVERSATIONS and "zz" * 32 not in kept
    assert NSEC_HEX not in repr(me)
