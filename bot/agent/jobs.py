"""NIP-90 job requests in (kind 5050) and their deletions (kind 5), recorded exactly once like
DMs.

``JobInbox`` subscribes to kind-5050 requests that tag the agent (``p``) and to kind-5 deletions
that say they delete a kind-5050 request (``k`` 5050, as NIP-09 has deletions name the kinds
they delete), without the pool's claim-before-handling: each event is checked and recorded with
``Intake.record`` — the claim of its event id and a request of protocol ``nip90`` whose body is
the event as received, in one transaction — and only then handed on. The job flow reads the body
(``bot.agent.replies.JobReplier``): a malformed request gets one ``error`` feedback there.

With ``untargeted`` (``[service] nip90_untargeted``) it also takes requests that tag no
provider; the flow serves those paid only (``Ask.subsidised`` is false: the pool never pays).

Dropped without a reply (claimed, counted, logged): the agent's own events, requests dated
before ``nip90_max_age_s`` or more than :data:`FUTURE_SLACK_S` ahead (a request dated in the
future is never re-run at each start either: its claim is kept like any other), requests that
tag other providers (or nobody, unless ``untargeted``), events too large to record, and floods
(``Guard``, per pubkey).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from bot.agent.guard import Guard, Verdict
from bot.nostr import nip90
from bot.nostr.event import Event
from bot.nostr.keys import Keys
from bot.relays.pool import DEFAULT_LOOKBACK_S, RelayPool, Subscription
from storage import Intake, NewRequest, RequestRecord
from storage.requests import MAX_BODY_CHARS

log = logging.getLogger(__name__)

PROTOCOL: Final = "nip90"
FUTURE_SLACK_S: Final = 600
"""How far ahead of our clock a request may be dated (clock skew) and still be served."""


class JobInbox:
    """See the module docstring. ``on_request(record)`` is called once per new request."""

    def __init__(self, pool: RelayPool, keys: Keys, intake: Intake, guard: Guard,
                 on_request: Callable[[RequestRecord], None], *, max_age_s: int,
                 untargeted: bool = False, clock: Callable[[], float] = time.time) -> None:
        self.pool = pool
        self.keys = keys
        self.intake = intake
        self.guard = guard
        self.on_request = on_request
        self.max_age_s = max_age_s
        self.untargeted = untargeted
        self.clock = clock
        self.ignored = 0
        self.dropped = 0
        self.subscriptions: list[Subscription] = []

    async def start(self) -> None:
        me = self.keys.public_hex
        jobs: dict[str, object] = ({"kinds": [nip90.KIND_TEXT_JOB]} if self.untargeted
                                   else {"kinds": [nip90.KIND_TEXT_JOB], "#p": [me]})
        self.subscriptions = [
            await self.pool.subscribe(
                [jobs, {"kinds": [nip90.KIND_DELETION], "#k": [str(nip90.KIND_TEXT_JOB)]}],
                self.handle, lookback_s=min(DEFAULT_LOOKBACK_S, self.max_age_s),
                durable_claim=False),
        ]

    async def _ignore(self, event: Event, why: str) -> None:
        self.ignored += 1
        log.info("jobs: ignored event %s kind %d: %s", event.id[:12], event.kind, why)
        await self.intake.claim(event.id)

    async def handle(self, event: Event, relay_url: str) -> None:
        """Check and record one event (the pool's handler)."""
        if await self.intake.seen(event.id):
            return
        now = int(self.clock())
        if event.pubkey == self.keys.public_hex:
            await self._ignore(event, "our own")
            return
        if event.kind == nip90.KIND_TEXT_JOB:
            if event.created_at < now - self.max_age_s:
                await self._ignore(event, "older than nip90_max_age_s")
                return
            if event.created_at > now + FUTURE_SLACK_S:
                await self._ignore(event, "dated in the future")
                return
            targets = event.tag_values("p")
            if self.keys.public_hex not in targets and (targets or not self.untargeted):
                await self._ignore(event, "not addressed to us")
                return
        elif event.kind != nip90.KIND_DELETION or not nip90.deleted_ids(event):
            await self._ignore(event, "not a job request or a deletion")
            return
        body = event.to_json()
        if len(body) > MAX_BODY_CHARS:
            await self._ignore(event, "too large")
            return
        request = NewRequest(event.id, event.pubkey, PROTOCOL, body, event.id,
                             (relay_url,) if relay_url else ())
        size = (len(event.content) * 3 // 4 if event.content  # encrypted params: base64
                else sum(len(v.encode()) for v in event.tag_values("i")))
        verdict = self.guard.admit(event.pubkey, size)
        if verdict is not Verdict.SERVE:
            self.dropped += 1
            log.warning("jobs: %s from %s dropped (%s)", event.id[:12], event.pubkey[:8],
                        verdict.value)
            await self.intake.record(request, [event.id], dropped=True)
            return
        record = await self.intake.record(request, [event.id])
        if record is not None:
            self.on_request(record)
