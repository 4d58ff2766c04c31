"""Direct messages in (NIP-04 and NIP-17), recorded exactly once; replies built in the
protocol the asker used.

``open_dm`` and ``build_reply`` are pure. ``Inbox`` subscribes to kind 4 and kind 1059 events
addressed to the agent (without the pool's claim-before-handling: the claim happens here, with
the record), opens each one, drops the agent's own messages (the self copies of its NIP-17
replies come back to it: those this process published are dropped by the pool before they are
read, ``RelayPool.ignore_echo``; another replica's are opened and dropped here), asks the
:class:`~bot.agent.guard.Guard` whether to serve it, and records it with ``Intake.record`` — the
claim of the event id (and the rumor id: the same rumor may come in several wraps) and the
request in ONE transaction. Only then is the request handed on, and only then does the pool's
cursor move past the event (its checkpoints queue behind the handler). A crash before the
record: the relay sends the event again after the restart; after it: the start-up sweep finds
the request.

Events that fail any check are claimed (never opened again), counted and logged, never
answered (a reply would help an attacker or spam relays); ``metrics.rejected`` counts them by
reason (``malformed``; the guard's verdicts).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from bot.agent.guard import Guard, Verdict
from bot.agent.metrics import Metrics
from bot.nostr import nip04, nip17
from bot.nostr.errors import MalformedEvent, NostrError
from bot.nostr.event import Event, sign_event
from bot.nostr.hexutil import is_hex
from bot.nostr.keys import Keys
from bot.nostr.nip59 import KIND_GIFT_WRAP
from bot.relays.pool import DEFAULT_LOOKBACK_S, GIFT_WRAP_LOOKBACK_S, RelayPool, Subscription
from storage import Intake, NewRequest, RequestRecord

log = logging.getLogger(__name__)

Protocol = Literal["nip04", "nip17"]
PROTOCOLS: Final = ("nip04", "nip17")
KIND_NIP04: Final = nip04.KIND_ENCRYPTED_DM
MAX_DM_TEXT_BYTES: Final = 16_000
"""Largest reply text ``build_reply`` accepts: a NIP-17 wrap of it stays under the 64 KiB
event content most relays accept (the text is encrypted twice, each time growing by 4/3)."""


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """One received DM. ``message_id`` is stable across relays and wraps: the event id for
    NIP-04, the rumor id for NIP-17."""

    protocol: Protocol
    sender: str
    text: str
    message_id: str
    event_id: str
    created_at: int
    relay_url: str


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


def build_reply(keys: Keys, protocol: str, recipient: str, reply_to: str | None, text: str
                ) -> list[Event]:
    """The events that answer message ``reply_to`` of ``recipient`` (``None``: a message that
    answers none) in ``protocol``: one kind-4 event for NIP-04; for NIP-17 the wrap to the
    asker, then the self copy. Sign once, store, publish as they are."""
    if not isinstance(text, str) or not text:
        raise MalformedEvent("a reply needs some text")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_DM_TEXT_BYTES:
        raise MalformedEvent(f"reply longer than {MAX_DM_TEXT_BYTES} bytes: split it")
    if not is_hex(recipient, 64):
        raise MalformedEvent("reply to an invalid pubkey")
    if protocol == "nip04":
        content = nip04.encrypt(keys.secret_hex, recipient, text)
        tags = [["p", recipient]] + ([["e", reply_to]] if reply_to else [])
        return [sign_event(keys, KIND_NIP04, content, tags)]
    if protocol == "nip17":
        out = nip17.private_message(keys, recipient, text, reply_to=reply_to)
        return [out.to_recipient, out.to_self]
    raise MalformedEvent(f"unknown DM protocol {protocol!r}")


class Inbox:
    """See the module docstring. ``on_request(record)`` is called once per new request."""

    def __init__(self, pool: RelayPool, keys: Keys, intake: Intake, guard: Guard,
                 on_request: Callable[[RequestRecord], None],
                 metrics: Metrics | None = None) -> None:
        self.pool = pool
        self.metrics = metrics or Metrics()
        self.keys = keys
        self.intake = intake
        self.guard = guard
        self.on_request = on_request
        self.rejected = 0
        self.dropped = 0
        self.own_skipped = 0
        self.subscriptions: list[Subscription] = []

    async def start(self) -> None:
        me = self.keys.public_hex
        self.subscriptions = [
            await self.pool.subscribe([{"kinds": [KIND_NIP04], "#p": [me]}], self.handle,
                                      lookback_s=DEFAULT_LOOKBACK_S, durable_claim=False),
            await self.pool.subscribe([{"kinds": [KIND_GIFT_WRAP], "#p": [me]}], self.handle,
                                      lookback_s=GIFT_WRAP_LOOKBACK_S, durable_claim=False),
        ]

    async def handle(self, event: Event, relay_url: str) -> None:
        """Open, check and record one event (the pool's handler)."""
        if await self.intake.seen(event.id):
            return
        try:
            dm = open_dm(self.keys, event, relay_url)
        except NostrError as exc:
            self.rejected += 1
            self.metrics.rejected.labels("malformed").inc()
            log.info("inbox: dropped event %s from %s: %s", event.id[:12], relay_url,
                     type(exc).__name__)
            await self.intake.claim(event.id)
            return
        if dm.sender == self.keys.public_hex:
            self.own_skipped += 1
            await self.intake.claim(event.id)
            return
        claims = [event.id] if dm.protocol == "nip04" else [event.id, f"rumor:{dm.message_id}"]
        verdict = self.guard.admit(dm.sender, len(dm.text.encode("utf-8", "surrogatepass")))
        request = NewRequest(dm.message_id, dm.sender, dm.protocol, dm.text, dm.message_id,
                             (relay_url,) if relay_url else ())
        if verdict is not Verdict.SERVE:
            self.dropped += 1
            log.warning("inbox: %s from %s dropped (%s)", dm.message_id[:12], dm.sender[:8],
                        verdict.value)
            await self.intake.record(request, claims, dropped=True)
            return
        record = await self.intake.record(request, claims)
        if record is not None:
            self.on_request(record)
