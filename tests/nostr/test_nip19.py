"""NIP-19 against every bech32 entity quoted in the NIPs."""

from typing import Any

import pytest

from bot.nostr import nip19
from bot.nostr.errors import Bech32Error
from bot.nostr.keys import Keys
from tests.nostr.vectors import load

DATA: dict[str, Any] = load("nip19_vectors.json")
ENTITIES: list[dict[str, Any]] = DATA["all_entities_in_nips"]
VALID = [e for e in ENTITIES if e["valid"]]
INVALID = [e for e in ENTITIES if not e["valid"]]


@pytest.mark.parametrize("entry", VALID, ids=lambda e: str(e["bech32"])[:16])
def test_valid_entities_round_trip(entry: dict[str, Any]) -> None:
    decoded = nip19.decode(entry["bech32"])
    expected = entry["decoded"]
    if entry["prefix"] in nip19.BARE_PREFIXES:
        assert decoded == (entry["prefix"], bytes.fromhex(expected["hex"]))
        assert nip19.encode_bytes(entry["prefix"], bytes.fromhex(expected["hex"])) == entry[
            "bech32"]
    else:
        assert isinstance(decoded, nip19.Entity)
        assert decoded.special == expected["special"]
        assert list(decoded.relays) == expected["relays"]
        assert decoded.author == expected["author"]
        assert decoded.kind == expected["kind"]
        assert nip19.decode(nip19.encode_entity(decoded)) == decoded
    if "derived_npub" in entry:
        assert Keys.from_nsec(entry["bech32"]).npub == entry["derived_npub"]


@pytest.mark.parametrize("entry", INVALID, ids=lambda e: str(e["bech32"])[:16])
def test_bad_checksums_are_refused(entry: dict[str, Any]) -> None:
    with pytest.raises(Bech32Error):
        nip19.decode(entry["bech32"])


@pytest.mark.parametrize("entry", DATA["official_19md_examples"])
def test_official_examples(entry: dict[str, Any]) -> None:
    decoded = nip19.decode(entry["bech32"])
    if "hex" in entry:
        assert isinstance(decoded, tuple) and decoded[1].hex() == entry["hex"]
    else:
        assert isinstance(decoded, nip19.Entity)
        assert decoded.special == entry["pubkey"] and list(decoded.relays) == entry["relays"]


@pytest.mark.parametrize(
    "text", ["", "npub", "npub1", "xyz1qqqqqqqq", "NPUB1abc", "npub1" + "q" * 4000 + "\x00",
             "nfoo1qqqqqqqqqqqqqqqqqqqqqqqq", "b" * 6000],
)
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(Bech32Error):
        nip19.decode(text)


def test_prefix_is_checked() -> None:
    keys = Keys.generate()
    with pytest.raises(Bech32Error):
        nip19.decode_bytes("nsec", keys.npub)
