"""NIP-01 events: an immutable ``Event``, its canonical serialization, parsing and signing.

``Event.from_dict`` / ``Event.from_json`` check the shape, **recompute the id and compare it**
with the ``id`` field (a relay may serve an event whose ``id`` is forged while its signature
matches the real id), then verify the BIP-340 signature. Anything else raises a subclass of
``InvalidEvent``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import coincurve

from bot.nostr.errors import BadSignature, EventIdMismatch, MalformedEvent
from bot.nostr.hexutil import is_hex
from bot.nostr.keys import Keys
from bot.untrusted import load_json

Tags = tuple[tuple[str, ...], ...]

MAX_EVENT_JSON_BYTES: Final = 256 * 1024
"""Default cap on the serialized size of an incoming event (content, tags and all)."""

MAX_KIND: Final = 65535
MAX_CREATED_AT: Final = 2**53 - 1
_FIELDS: Final = ("id", "pubkey", "created_at", "kind", "tags", "content", "sig")


def serialize(pubkey: str, created_at: int, kind: int, tags: Sequence[Sequence[str]],
              content: str) -> bytes:
    """The canonical NIP-01 serialization that the id hashes (UTF-8, no whitespace)."""
    data = [0, pubkey, created_at, kind, [list(t) for t in tags], content]
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates decoded from "\ud800"
        raise MalformedEvent("event text is not valid Unicode") from exc


def compute_id(pubkey: str, created_at: int, kind: int, tags: Sequence[Sequence[str]],
               content: str) -> str:
    return hashlib.sha256(serialize(pubkey, created_at, kind, tags, content)).hexdigest()


def freeze_tags(tags: Iterable[Iterable[str]]) -> Tags:
    return tuple(tuple(tag) for tag in tags)


@dataclass(frozen=True, slots=True)
class Event:
    """A signed, verified Nostr event. Build one with ``sign_event`` or ``Event.from_dict``."""

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: Tags
    content: str
    sig: str

    # -- parsing ---------------------------------------------------------------------------
    @classmethod
    def from_json(cls, raw: str | bytes, *, max_bytes: int = MAX_EVENT_JSON_BYTES) -> Event:
        return cls.from_dict(load_json(raw, max_chars=max_bytes, error=MalformedEvent,
                                       what="event"))

    @classmethod
    def from_dict(cls, data: object) -> Event:
        """Check shape, recompute and compare the id, verify the signature."""
        event = cls.parse_unverified(data)
        event.verify()
        return event

    @classmethod
    def parse_unverified(cls, data: object) -> Event:
        """Shape checks only: the caller must call ``verify`` before trusting it."""
        fields, pubkey, created_at, kind, tags, content = parse_unsigned(data, "event", _FIELDS)
        event_id, sig = fields["id"], fields["sig"]
        if not is_hex(event_id, 64):
            raise MalformedEvent("id must be 64 lowercase hex characters")
        if not is_hex(sig, 128):
            raise MalformedEvent("sig must be 128 lowercase hex characters")
        return cls(id=event_id, pubkey=pubkey, created_at=created_at, kind=kind,
                   tags=tags, content=content, sig=sig)

    # -- checks ----------------------------------------------------------------------------
    def verify(self) -> None:
        """Raise unless the id is the hash of the event and the signature verifies."""
        real_id = compute_id(self.pubkey, self.created_at, self.kind, self.tags, self.content)
        if real_id != self.id:
            raise EventIdMismatch("id does not match the event's content")
        try:
            ok = coincurve.PublicKeyXOnly(bytes.fromhex(self.pubkey)).verify(
                bytes.fromhex(self.sig), bytes.fromhex(real_id))
        except ValueError as exc:
            raise BadSignature("pubkey is not a valid curve point") from exc
        if not ok:
            raise BadSignature("signature does not verify")

    # -- output ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "pubkey": self.pubkey, "created_at": self.created_at,
                "kind": self.kind, "tags": [list(t) for t in self.tags],
                "content": self.content, "sig": self.sig}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    # -- tag helpers -----------------------------------------------------------------------
    def tag_values(self, name: str) -> list[str]:
        """The first value of every tag called ``name``, in order."""
        return [t[1] for t in self.tags if len(t) >= 2 and t[0] == name]

    def first_tag(self, name: str) -> str | None:
        values = self.tag_values(name)
        return values[0] if values else None


def parse_unsigned(data: object, what: str, required: Sequence[str]
                   ) -> tuple[dict[str, Any], str, int, int, Tags, str]:
    """Check the fields every event and rumor has: ``data`` as a dict, then pubkey, created_at,
    kind, tags, content. ``required`` lists every field that must be present."""
    if not isinstance(data, dict):
        raise MalformedEvent(f"{what} must be a JSON object")
    missing = [name for name in required if name not in data]
    if missing:
        raise MalformedEvent(f"{what} lacks fields: {', '.join(missing)}")
    pubkey, created_at, kind, content = (data["pubkey"], data["created_at"], data["kind"],
                                         data["content"])
    if not is_hex(pubkey, 64):
        raise MalformedEvent(f"{what} pubkey must be 64 lowercase hex characters")
    if type(created_at) is not int or not 0 <= created_at <= MAX_CREATED_AT:
        raise MalformedEvent(f"{what} created_at must be a non-negative integer")
    if type(kind) is not int or not 0 <= kind <= MAX_KIND:
        raise MalformedEvent(f"{what} kind must be an integer in 0..65535")
    if not isinstance(content, str):
        raise MalformedEvent(f"{what} content must be a string")
    return data, pubkey, created_at, kind, parse_tags(data["tags"]), content


def parse_tags(tags: object) -> Tags:
    if not isinstance(tags, list):
        raise MalformedEvent("tags must be a list")
    out: list[tuple[str, ...]] = []
    for tag in tags:
        if not isinstance(tag, list) or not all(isinstance(item, str) for item in tag):
            raise MalformedEvent("each tag must be a list of strings")
        out.append(tuple(tag))
    return tuple(out)


def sign_event(keys: Keys, kind: int, content: str,
               tags: Iterable[Iterable[str]] = (), created_at: int | None = None) -> Event:
    """Build and sign an event with ``keys``; ``created_at`` defaults to now."""
    if type(kind) is not int or not 0 <= kind <= MAX_KIND:
        raise MalformedEvent("kind must be an integer in 0..65535")
    if not isinstance(content, str):
        raise MalformedEvent("content must be a string")
    frozen = freeze_tags(tags)
    if not all(isinstance(item, str) for tag in frozen for item in tag):
        raise MalformedEvent("each tag must be a list of strings")
    when = int(time.time()) if created_at is None else created_at
    if type(when) is not int or not 0 <= when <= MAX_CREATED_AT:
        raise MalformedEvent("created_at must be a non-negative integer")
    event_id = compute_id(keys.public_hex, when, kind, frozen, content)
    sig = keys.sign(bytes.fromhex(event_id))
    return Event(id=event_id, pubkey=keys.public_hex, created_at=when, kind=kind,
                 tags=frozen, content=content, sig=sig)
