"""NIP-17 private direct messages: kind-14 rumors in NIP-59 gift wraps.

``private_message`` builds a reply as two gift wraps of the same rumor: one to the recipient,
one to ourselves (so our other clients see what we sent). ``read_message`` turns an unwrapped
gift wrap into a ``PrivateMessage`` or raises ``GiftWrapError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bot.nostr import nip59
from bot.nostr.errors import GiftWrapError
from bot.nostr.event import Event
from bot.nostr.keys import Keys

KIND_CHAT: Final = 14


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    """A received NIP-17 chat message. ``rumor_id`` identifies it across all its wraps."""

    sender: str
    text: str
    rumor_id: str
    created_at: int
    recipients: tuple[str, ...]
    reply_to: str | None
    subject: str | None
    wrap_id: str


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A sent NIP-17 message: the wrap for the recipient, the copy for ourselves, the rumor."""

    to_recipient: Event
    to_self: Event
    rumor: nip59.Rumor


def chat_rumor(keys: Keys, recipient_pubkey: str, text: str, reply_to: str | None = None,
               subject: str | None = None, created_at: int | None = None) -> nip59.Rumor:
    tags: list[list[str]] = [["p", recipient_pubkey]]
    if reply_to is not None:
        tags.append(["e", reply_to])
    if subject is not None:
        tags.append(["subject", subject])
    return nip59.Rumor.create(keys.public_hex, KIND_CHAT, text, tags, created_at)


def private_message(keys: Keys, recipient_pubkey: str, text: str, reply_to: str | None = None,
                    subject: str | None = None) -> OutgoingMessage:
    """Wrap ``text`` to the recipient and a copy to ourselves (same rumor, separate seals)."""
    rumor = chat_rumor(keys, recipient_pubkey, text, reply_to, subject)
    return OutgoingMessage(
        to_recipient=nip59.wrap(keys, rumor, recipient_pubkey),
        to_self=nip59.wrap(keys, rumor, keys.public_hex),
        rumor=rumor,
    )


def read_message(opened: nip59.Unwrapped) -> PrivateMessage:
    rumor = opened.rumor
    if rumor.kind != KIND_CHAT:
        raise GiftWrapError(f"expected a kind {KIND_CHAT} chat rumor, got {rumor.kind}")
    subjects = rumor.tag_values("subject")
    replies = rumor.tag_values("e")
    return PrivateMessage(
        sender=opened.sender, text=rumor.content, rumor_id=rumor.id,
        created_at=rumor.created_at, recipients=tuple(rumor.tag_values("p")),
        reply_to=replies[0] if replies else None, subject=subjects[-1] if subjects else None,
        wrap_id=opened.wrap.id,
    )


def receive(keys: Keys, wrap_event: Event) -> PrivateMessage:
    """Unwrap and read in one step."""
    return read_message(nip59.unwrap(keys, wrap_event))
