"""NIP-19 bech32 entities: npub, nsec, note (32 bytes) and nprofile, nevent, naddr (TLV).

Built on pynostr's bech32 primitives; every failure becomes a ``Bech32Error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from pynostr import bech32

from bot.nostr.errors import Bech32Error

BARE_PREFIXES: Final = frozenset({"npub", "nsec", "note"})
TLV_PREFIXES: Final = frozenset({"nprofile", "nevent", "naddr"})
MAX_LENGTH: Final = 5000

_TLV_SPECIAL: Final = 0
_TLV_RELAY: Final = 1
_TLV_AUTHOR: Final = 2
_TLV_KIND: Final = 3


@dataclass(frozen=True, slots=True)
class Entity:
    """A decoded TLV entity. ``special`` is hex for nprofile/nevent and text for naddr."""

    prefix: str
    special: str
    relays: tuple[str, ...] = field(default_factory=tuple)
    author: str | None = None
    kind: int | None = None


def _decode_raw(text: str) -> tuple[str, bytes]:
    if not isinstance(text, str) or not text or len(text) > MAX_LENGTH:
        raise Bech32Error("not a bech32 string")
    hrp, data, spec = _bech32_decode(text.strip())
    if hrp is None or data is None or spec != bech32.Encoding.BECH32:
        raise Bech32Error("bad bech32 checksum or characters")
    converted = bech32.convertbits(data, 5, 8, False)
    if converted is None:
        raise Bech32Error("bad bech32 padding")
    return hrp, bytes(converted)


def _bech32_decode(text: str) -> tuple[str | None, list[int] | None, object]:
    # pynostr's decoder caps strings at 90 characters (BIP-173); NIP-19 lifts that limit.
    if any(ord(c) < 33 or ord(c) > 126 for c in text):
        return None, None, None
    if text.lower() != text and text.upper() != text:
        return None, None, None
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        return None, None, None
    if not all(c in bech32.CHARSET for c in text[pos + 1 :]):
        return None, None, None
    hrp = text[:pos]
    data = [bech32.CHARSET.find(c) for c in text[pos + 1 :]]
    spec = bech32.bech32_verify_checksum(hrp, data)
    if spec is None:
        return None, None, None
    return hrp, data[:-6], spec


def _encode_raw(prefix: str, payload: bytes) -> str:
    words = bech32.convertbits(payload, 8, 5, True)
    result: str = bech32.bech32_encode(prefix, words, bech32.Encoding.BECH32)
    return result


def decode_bytes(expected_prefix: str, text: str) -> bytes:
    """Decode an npub / nsec / note into its 32 raw bytes, checking the prefix."""
    hrp, payload = _decode_raw(text)
    if hrp != expected_prefix:
        raise Bech32Error(f"expected an {expected_prefix}, got prefix {hrp!r}")
    if len(payload) != 32:
        raise Bech32Error(f"an {expected_prefix} holds 32 bytes")
    return payload


def encode_bytes(prefix: str, payload: bytes) -> str:
    if prefix not in BARE_PREFIXES or len(payload) != 32:
        raise Bech32Error("npub/nsec/note encode exactly 32 bytes")
    return _encode_raw(prefix, payload)


def decode(text: str) -> tuple[str, bytes] | Entity:
    """Decode any supported entity: ``(prefix, 32 bytes)`` for bare keys/ids, else an Entity."""
    hrp, payload = _decode_raw(text)
    if hrp in BARE_PREFIXES:
        if len(payload) != 32:
            raise Bech32Error(f"an {hrp} holds 32 bytes")
        return hrp, payload
    if hrp not in TLV_PREFIXES:
        raise Bech32Error(f"unknown NIP-19 prefix {hrp!r}")
    return _parse_tlv(hrp, payload)


def _parse_tlv(prefix: str, payload: bytes) -> Entity:
    special: str | None = None
    relays: list[str] = []
    author: str | None = None
    kind: int | None = None
    i = 0
    while i < len(payload):
        if i + 2 > len(payload):
            raise Bech32Error("truncated TLV")
        t, length = payload[i], payload[i + 1]
        value = payload[i + 2 : i + 2 + length]
        if len(value) != length:
            raise Bech32Error("truncated TLV value")
        i += 2 + length
        if t == _TLV_SPECIAL and special is None:
            if prefix == "naddr":
                special = _utf8(value)
            else:
                if length != 32:
                    raise Bech32Error("special must be 32 bytes")
                special = value.hex()
        elif t == _TLV_RELAY:
            relays.append(_utf8(value))
        elif t == _TLV_AUTHOR and author is None:
            if length != 32:
                raise Bech32Error("author must be 32 bytes")
            author = value.hex()
        elif t == _TLV_KIND and kind is None:
            if length != 4:
                raise Bech32Error("kind must be 4 bytes")
            kind = int.from_bytes(value, "big")
        # unknown types are ignored, as NIP-19 asks
    if special is None:
        raise Bech32Error("missing TLV special entry")
    if prefix == "naddr" and (author is None or kind is None):
        raise Bech32Error("naddr needs author and kind")
    return Entity(prefix=prefix, special=special, relays=tuple(relays), author=author, kind=kind)


def _utf8(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Bech32Error("TLV text is not UTF-8") from exc


def encode_entity(entity: Entity) -> str:
    """Encode an nprofile / nevent / naddr."""
    if entity.prefix not in TLV_PREFIXES:
        raise Bech32Error(f"not a TLV prefix: {entity.prefix!r}")
    out = bytearray()

    def put(t: int, value: bytes) -> None:
        if len(value) > 255:
            raise Bech32Error("TLV value longer than 255 bytes")
        out.extend((t, len(value)))
        out.extend(value)

    if entity.prefix == "naddr":
        put(_TLV_SPECIAL, entity.special.encode("utf-8"))
    else:
        put(_TLV_SPECIAL, _hex32(entity.special))
    for relay in entity.relays:
        put(_TLV_RELAY, relay.encode("utf-8"))
    if entity.author is not None:
        put(_TLV_AUTHOR, _hex32(entity.author))
    if entity.kind is not None:
        put(_TLV_KIND, entity.kind.to_bytes(4, "big"))
    return _encode_raw(entity.prefix, bytes(out))


def _hex32(value: str) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise Bech32Error("expected 32 bytes of hex") from exc
    if len(raw) != 32:
        raise Bech32Error("expected 32 bytes of hex")
    return raw
