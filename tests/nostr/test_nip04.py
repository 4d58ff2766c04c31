"""NIP-04: round trips, and every malformed payload a typed error."""

import base64

import pytest

from bot.nostr import nip04
from bot.nostr.errors import InvalidKey, Nip04Error
from bot.nostr.keys import Keys


def test_round_trip_both_directions() -> None:
    a, b = Keys.generate(), Keys.generate()
    text = "what is 2+2? ⚡ ünïcode"
    content = nip04.encrypt(a.secret_hex, b.public_hex, text)
    assert nip04.decrypt(b.secret_hex, a.public_hex, content) == text
    assert nip04.decrypt(a.secret_hex, b.public_hex, content) == text


def test_wrong_key_fails_cleanly() -> None:
    a, b, c = Keys.generate(), Keys.generate(), Keys.generate()
    content = nip04.encrypt(a.secret_hex, b.public_hex, "secret")
    try:
        out = nip04.decrypt(c.secret_hex, a.public_hex, content)
    except Nip04Error:
        return
    assert out != "secret"  # a wrong key can, rarely, unpad into valid bytes: never the text


@pytest.mark.parametrize(
    "content",
    [
        "", "abc", "abc?iv=", "?iv=?iv=", "!!!?iv=AAAAAAAAAAAAAAAAAAAAAA==",
        base64.b64encode(b"x" * 16).decode() + "?iv=" + base64.b64encode(b"short").decode(),
        base64.b64encode(b"x" * 15).decode() + "?iv=" + base64.b64encode(b"i" * 16).decode(),
        base64.b64encode(b"x" * 32).decode() + "?iv=" + base64.b64encode(b"i" * 16).decode(),
    ],
)
def test_malformed_payloads(content: str) -> None:
    a, b = Keys.from_hex("01" * 32), Keys.from_hex("02" * 32)  # fixed: deterministic outcome
    with pytest.raises(Nip04Error):
        nip04.decrypt(a.secret_hex, b.public_hex, content)


def test_bad_keys() -> None:
    a = Keys.generate()
    with pytest.raises(InvalidKey):
        nip04.encrypt(a.secret_hex, "ff" * 32, "x")
    with pytest.raises(InvalidKey):
        nip04.decrypt(a.secret_hex, "nothex", "x?iv=y")
