"""NIP-90 job requests in (kind 5050) and their deletions (kind 5), recorded exactly once like
DMs.

``JobInbox`` subscribes to kind-5050 requests that tag the agent (``p``), without the pool's
claim-before-handling: each event is checked and recorded with ``Intake.record`` — the claim of
its event id and a request of protocol ``nip90`` whose body is the event as received, in one
transaction — and only then handed on. The job flow reads the body
(``bot.agent.replies.JobReplier``): a malformed request gets one ``error`` feedback there.

Deletions are found by what they delete, not by what they say about it: NIP-09 makes the ``k``
tag optional, and ``#k 5050`` would bring every deletion of every job request on the relays
(anyone's, for any provider) into our database. So a second subscription asks for kind 5 whose
``e`` tag names one of *our* unfinished requests (``#e``, at most :data:`MAX_WATCHED`, the
newest, :data:`IDS_PER_FILTER` to a filter): a deletion with or without ``k`` is seen, and a
stranger can only send deletions of our own requests (ignored by the flow unless the request's
author signed them). The watched set is the unfinished kind-5050 requests of the intake, read at
start and every :data:`REFRESH_S`, plus each request as it is recorded; the subscription is
replaced (a new one, then the old one closed) at most every :data:`DEBOUNCE_S` when the set
changed. The new subscription's look-back returns a deletion stored on the relay meanwhile.

With ``untargeted`` (``[service] nip90_untargeted``) it also takes requests that tag no
provider; the flow serves those paid only (``Ask.subsidised`` is false: the pool never pays).

Dropped without a reply (claimed, counted, logged): the agent's own events, requests dated
before ``nip90_max_age_s`` or more than :data:`FUTURE_SLACK_S` ahead (a request dated in the
future is never re-run at each start either: its claim is kept like any other), requests that
tag other providers (or nobody, unless ``untargeted``), events too large to record, and floods
(``Guard``, per pubkey).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Final

from bot.agent.guard import Guard, Verdict
from bot.nostr import nip90
from bot.nostr.event import Event
from bot.nostr.keys import Keys
from bot.relays.pool import DEFAULT_LOOKBACK_S, RelayPool, Subscription
from bot.relays.tasks import cancel_all
from storage import Intake, NewRequest, RequestRecord, RequestState
from storage.requests import MAX_BODY_CHARS

log = logging.getLogger(__name__)

PROTOCOL: Final = "nip90"
FUTURE_SLACK_S: Final = 600
"""How far ahead of our clock a request may be dated (clock skew) and still be served."""
MAX_WATCHED: Final = 1000
"""Most unfinished requests whose deletions are watched (the newest; an older one beyond it
cannot be cancelled: it still expires or completes)."""
IDS_PER_FILTER: Final = 250
DEBOUNCE_S: Final = 0.5
REFRESH_S: Final = 30.0


def _kind_of(body: str | None) -> object:
    """The ``kind`` of a recorded event body (checked when it was recorded)."""
    try:
        data = json.loads(body or "")
    except ValueError:
        return None
    return data.get("kind") if isinstance(data, dict) else None


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
        self._requests: Subscription | None = None
        self._deletions: Subscription | None = None
        self._watched: dict[str, None] = {}
        self._changed = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def subscriptions(self) -> list[Subscription]:
        return [s for s in (self._requests, self._deletions) if s is not None]

    async def start(self) -> None:
        me = self.keys.public_hex
        jobs: dict[str, object] = ({"kinds": [nip90.KIND_TEXT_JOB]} if self.untargeted
                                   else {"kinds": [nip90.KIND_TEXT_JOB], "#p": [me]})
        self._requests = await self.pool.subscribe(
            [jobs], self.handle, lookback_s=self._lookback_s, durable_claim=False)
        await self._refresh()
        await self._resubscribe()
        self._watcher = asyncio.create_task(self._watch(), name="job deletions")

    async def stop(self) -> None:
        """Stop watching: the background task, then every subscription."""
        if self._watcher is not None:
            await cancel_all([self._watcher])
            self._watcher = None
        for sub in self.subscriptions:
            with contextlib.suppress(Exception):
                await self.pool.unsubscribe(sub)
        self._requests = self._deletions = None

    @property
    def _lookback_s(self) -> int:
        return min(DEFAULT_LOOKBACK_S, self.max_age_s)

    def watch(self, request_id: str) -> None:
        """Watch for deletions of ``request_id`` (a kind-5050 request just recorded)."""
        if request_id not in self._watched:
            self._watched[request_id] = None
            self._changed.set()

    async def _refresh(self) -> None:
        """The watched set from the intake: its unfinished kind-5050 requests, newest kept."""
        live: dict[str, None] = {}
        for req in await self.intake.unfinished_requests():
            if (req.protocol == PROTOCOL and req.state in (RequestState.NEW, RequestState.OPEN)
                    and _kind_of(req.body) == nip90.KIND_TEXT_JOB):
                live[req.id] = None
        if list(live) != list(self._watched):
            self._watched = live
            self._changed.set()

    async def _resubscribe(self) -> None:
        self._changed.clear()
        ids = list(self._watched)[-MAX_WATCHED:]
        old = self._deletions
        self._deletions = None
        if ids:
            self._deletions = await self.pool.subscribe(
                [{"kinds": [nip90.KIND_DELETION], "#e": ids[i:i + IDS_PER_FILTER]}
                 for i in range(0, len(ids), IDS_PER_FILTER)],
                self.handle, lookback_s=self._lookback_s, durable_claim=False)
        if old is not None:
            await self.pool.unsubscribe(old)

    async def _watch(self) -> None:
        """Replace the deletion subscription when the watched set changed (debounced), and
        re-read the set from the intake every :data:`REFRESH_S`."""
        loop = asyncio.get_running_loop()
        refresh_at = loop.time() + REFRESH_S
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, refresh_at - loop.time())):
                    await self._changed.wait()
            try:
                if loop.time() >= refresh_at:
                    refresh_at = loop.time() + REFRESH_S
                    await self._refresh()
                if self._changed.is_set():
                    await asyncio.sleep(DEBOUNCE_S)  # let a burst of requests gather
                    await self._resubscribe()
            except Exception:
                log.exception("jobs: watching deletions failed; retrying")
                await asyncio.sleep(DEBOUNCE_S)

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
            if event.kind == nip90.KIND_TEXT_JOB:
                self.watch(event.id)
            self.on_request(record)
