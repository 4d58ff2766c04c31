"""NIP-59 gift wrap: rumor (unsigned event) → seal (kind 13) → gift wrap (kind 1059).

``unwrap`` checks everything a receiver must: the wrap's id and signature (the caller passes a
verified ``Event``), the wrap's kind, the NIP-44 layers, the seal's id and signature, the seal's
kind, the rumor's shape and id, and ``seal.pubkey == rumor.pubkey`` (otherwise anyone could seal
a rumor claiming to come from someone else). ``wrap`` builds the two layers with independent
random timestamps up to two days in the past and a fresh one-time key for the outer layer.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from bot.nostr import nip44
from bot.nostr.errors import GiftWrapError, InvalidEvent, MalformedEvent, Nip44Error
from bot.nostr.event import (
    MAX_EVENT_JSON_BYTES,
    Event,
    Tags,
    compute_id,
    freeze_tags,
    parse_unsigned,
    sign_event,
)
from bot.nostr.keys import Keys
from bot.untrusted import load_json

KIND_SEAL: Final = 13
KIND_GIFT_WRAP: Final = 1059
MAX_TIMESTAMP_SHIFT_S: Final = 2 * 24 * 3600
"""Seal and wrap timestamps are up to two days in the past (NIP-17/59)."""
_RUMOR_FIELDS: Final = ("pubkey", "created_at", "kind", "tags", "content")


@dataclass(frozen=True, slots=True)
class Rumor:
    """An unsigned event with an id: the real message inside a seal."""

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: Tags
    content: str

    @classmethod
    def create(cls, pubkey: str, kind: int, content: str,
               tags: Iterable[Iterable[str]] = (), created_at: int | None = None) -> Rumor:
        when = int(time.time()) if created_at is None else created_at
        frozen = freeze_tags(tags)
        return cls(id=compute_id(pubkey, when, kind, frozen, content), pubkey=pubkey,
                   created_at=when, kind=kind, tags=frozen, content=content)

    @classmethod
    def from_dict(cls, data: object) -> Rumor:
        """Shape checks and id recomputation (a rumor has no signature to check)."""
        fields, pubkey, created_at, kind, tags, content = parse_unsigned(
            data, "rumor", _RUMOR_FIELDS)
        real_id = compute_id(pubkey, created_at, kind, tags, content)
        claimed = fields.get("id", real_id)
        if claimed != real_id:
            raise GiftWrapError("rumor id does not match its content")
        return cls(id=real_id, pubkey=pubkey, created_at=created_at, kind=kind, tags=tags,
                   content=content)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "pubkey": self.pubkey, "created_at": self.created_at,
                "kind": self.kind, "tags": [list(t) for t in self.tags], "content": self.content}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    def tag_values(self, name: str) -> list[str]:
        return [t[1] for t in self.tags if len(t) >= 2 and t[0] == name]


@dataclass(frozen=True, slots=True)
class Unwrapped:
    """The three layers of a received gift wrap. ``sender`` is the seal's (= rumor's) pubkey."""

    wrap: Event
    seal: Event
    rumor: Rumor

    @property
    def sender(self) -> str:
        return self.seal.pubkey


def random_past_timestamp(now: int | None = None) -> int:
    """A time up to two days before ``now``, drawn from the OS CSPRNG."""
    current = int(time.time()) if now is None else now
    return current - secrets.randbelow(MAX_TIMESTAMP_SHIFT_S + 1)


def seal(keys: Keys, rumor: Rumor, recipient_pubkey: str,
         created_at: int | None = None) -> Event:
    """Kind 13: the rumor encrypted from ``keys`` to ``recipient_pubkey``, signed by ``keys``."""
    if rumor.pubkey != keys.public_hex:
        raise GiftWrapError("a seal must be signed by the rumor's author")
    conv = keys.conversation_key(recipient_pubkey)
    when = random_past_timestamp() if created_at is None else created_at
    return sign_event(keys, KIND_SEAL, nip44.encrypt(rumor.to_json(), conv), (), when)


def gift_wrap(seal_event: Event, recipient_pubkey: str, created_at: int | None = None,
              ephemeral: Keys | None = None, extra_tags: Iterable[Iterable[str]] = ()) -> Event:
    """Kind 1059: the seal encrypted by a one-time key to ``recipient_pubkey``."""
    one_time = Keys.generate() if ephemeral is None else ephemeral
    conv = one_time.conversation_key(recipient_pubkey)
    when = random_past_timestamp() if created_at is None else created_at
    tags = [["p", recipient_pubkey], *[list(t) for t in extra_tags]]
    return sign_event(one_time, KIND_GIFT_WRAP, nip44.encrypt(seal_event.to_json(), conv),
                      tags, when)


def wrap(keys: Keys, rumor: Rumor, recipient_pubkey: str) -> Event:
    """Seal and gift-wrap ``rumor`` for one recipient (random timestamps, one-time key)."""
    return gift_wrap(seal(keys, rumor, recipient_pubkey), recipient_pubkey)


def unwrap(keys: Keys, wrap_event: Event) -> Unwrapped:
    """Open a verified kind-1059 event addressed to ``keys``; raise on any broken layer."""
    if wrap_event.kind != KIND_GIFT_WRAP:
        raise GiftWrapError(f"expected kind {KIND_GIFT_WRAP}, got {wrap_event.kind}")
    try:
        seal_json = nip44.decrypt(wrap_event.content,
                                  keys.conversation_key(wrap_event.pubkey))
    except Nip44Error as exc:
        raise GiftWrapError(f"gift wrap does not decrypt: {exc}") from exc
    try:
        seal_event = Event.from_json(seal_json)
    except InvalidEvent as exc:
        raise GiftWrapError(f"seal is not a valid signed event: {exc}") from exc
    if seal_event.kind != KIND_SEAL:
        raise GiftWrapError(f"expected a kind {KIND_SEAL} seal, got {seal_event.kind}")
    try:
        rumor_json = nip44.decrypt(seal_event.content,
                                   keys.conversation_key(seal_event.pubkey))
    except Nip44Error as exc:
        raise GiftWrapError(f"seal does not decrypt: {exc}") from exc
    raw_rumor = load_json(rumor_json, max_chars=MAX_EVENT_JSON_BYTES, error=GiftWrapError,
                          what="rumor")
    try:
        rumor = Rumor.from_dict(raw_rumor)
    except MalformedEvent as exc:
        raise GiftWrapError(f"rumor is malformed: {exc}") from exc
    if rumor.pubkey != seal_event.pubkey:
        raise GiftWrapError("rumor author differs from the seal's signer")
    return Unwrapped(wrap=wrap_event, seal=seal_event, rumor=rumor)
