"""Direct messages in (NIP-04 and NIP-17) and replies out in the protocol the asker used.

``open_dm`` and ``build_reply`` are pure. ``Inbox`` wires them to a ``RelayPool``: it
subscribes to kind 4 and kind 1059 events addressed to the agent, opens them, drops the agent's
own messages (the self copies of its NIP-17 replies come back to it), deduplicates NIP-17
messages by rumor id as well (the same rumor may arrive in several wraps), and hands each new
``DirectMessage`` to the handler once. Messages that fail any check are counted and logged,
never answered (a reply would help an attacker or spam relays).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal

from bot.nostr import nip04, nip17
from bot.nostr.errors import MalformedEvent, NostrError
from bot.nostr.event import Event, sign_event
from bot.nostr.hexutil import is_hex
from bot.nostr.keys import Keys
from bot.nostr.nip59 import KIND_GIFT_WRAP
from bot.relays.pool import (
    DEFAULT_LOOKBACK_S,
    GIFT_WRAP_LOOKBACK_S,
    PublishResult,
    RelayPool,
    Subscription,
)

log = logging.getLogger("bot.relays.inbox")

Protocol = Literal["nip04", "nip17"]
KIND_NIP04: Final = nip04.KIND_ENCRYPTED_DM
MAX_DM_TEXT_BYTES: Final = 16_000
"""Largest reply text ``build_reply`` accepts: a NIP-17 wrap of it stays under the 64 KiB
event content most relays accept (the text is encrypted twice, each time growing by 4/3)."""


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """One received DM. ``message_id`` is stable across relays and wraps: the event id for
    NIP-04, the rumor id for NIP-17. Reply with ``build_reply`` / ``Inbox.reply``."""

    protocol: Protocol
    sender: str
    text: str
    message_id: str
    event_id: str
    created_at: int
    relay_url: str


DmHandler = Callable[[DirectMessage], Awaitable[None]]


def open_dm(keys: Keys, event: Event, relay_url: str = "") -> DirectMessage:
    """Decrypt a verified kind-4 or kind-1059 event addressed to ``keys``, or raise."""
    if event.kind == KIND_NIP04:
        if keys.public_hex not in event.tag_values("p"):
            raise MalformedEvent("NIP-04 DM not addressed to us")
        text = nip04.decrypt(keys.secret_hex, event.pubkey, event.content)
        return DirectMessage("nip04", event.pubkey, text, event.id, event.id, event.created_at,
                             relay_url)
    if event.kind == KIND_GIFT_WRAP:
        message = nip17.receive(keys, event)
        return DirectMessage("nip17", message.sender, message.text, message.rumor_id, event.id,
                             message.created_at, relay_url)
    raise MalformedEvent(f"kind {event.kind} is not a direct message")


def build_reply(keys: Keys, dm: DirectMessage, text: str) -> list[Event]:
    """The events that answer ``dm`` in its own protocol: one kind-4 event for NIP-04; for
    NIP-17 the wrap to the asker and the self copy. Sign once, store, publish as they are."""
    if not isinstance(text, str) or not text:
        raise MalformedEvent("a reply needs some text")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_DM_TEXT_BYTES:
        raise MalformedEvent(f"reply longer than {MAX_DM_TEXT_BYTES} bytes: split it")
    if not is_hex(dm.sender, 64):
        raise MalformedEvent("reply to an invalid pubkey")
    if dm.protocol == "nip04":
        content = nip04.encrypt(keys.secret_hex, dm.sender, text)
        return [sign_event(keys, KIND_NIP04, content, [["p", dm.sender], ["e", dm.event_id]])]
    out = nip17.private_message(keys, dm.sender, text, reply_to=dm.message_id)
    return [out.to_recipient, out.to_self]


class Inbox:
    def __init__(self, pool: RelayPool, keys: Keys, handler: DmHandler) -> None:
        self.pool = pool
        self.keys = keys
        self.handler = handler
        self.rejected = 0
        self.own_skipped = 0
        self.subscriptions: list[Subscription] = []

    async def start(self) -> None:
        me = self.keys.public_hex
        self.subscriptions = [
            await self.pool.subscribe([{"kinds": [KIND_NIP04], "#p": [me]}], self._on_event,
                                      lookback_s=DEFAULT_LOOKBACK_S),
            await self.pool.subscribe([{"kinds": [KIND_GIFT_WRAP], "#p": [me]}], self._on_event,
                                      lookback_s=GIFT_WRAP_LOOKBACK_S),
        ]

    async def _on_event(self, event: Event, relay_url: str) -> None:
        try:
            dm = open_dm(self.keys, event, relay_url)
        except NostrError as exc:
            self.rejected += 1
            log.info("inbox: dropped event %s from %s: %s", event.id, relay_url,
                     type(exc).__name__)
            return
        if dm.sender == self.keys.public_hex:
            self.own_skipped += 1
            return
        if dm.protocol == "nip17" and not await self.pool.claim(f"rumor:{dm.message_id}"):
            return
        await self.handler(dm)

    async def reply(self, dm: DirectMessage, text: str, *,
                    timeout_s: float = 10.0) -> list[PublishResult]:
        """Build and publish a reply (for an outbox, use ``build_reply`` and store first)."""
        return [await self.pool.publish(event, timeout_s=timeout_s)
                for event in build_reply(self.keys, dm, text)]
