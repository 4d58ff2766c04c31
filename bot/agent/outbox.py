"""Messages out: stored, then published until a relay accepts them, exactly the same events.

``Publisher.send(key, events, ...)`` stores the signed events in the ledger's outbox
(``storage.Outbox``; a key is stored once, so a message built twice is sent once) and publishes
them at once: to the agent's write relays, to the relays the request arrived on, and — for the
event addressed to the asker — to the asker's own relays when they are known (kind 10050 for
NIP-17, kind-10002 read relays for NIP-04). An asker's lists not known yet are looked up in the
background and the event is sent there too when they arrive: the first reply never waits.
An event stays pending until some relay says OK; ``run()`` retries pending events with backoff
and, at start, republishes whatever a previous process left pending — the very same events.
Acceptances are written in batches: the events accepted while one such write is under way are
marked together by the next (an event accepted but not yet marked when the process dies is
only published again, as the same event).
With several replicas on one database, an event is published by the replica holding its lease
(``storage.leases``: the one that stored it, or one that takes it over after the lease expired).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Final

from bot.agent.routing import RelayLists
from bot.nostr.event import Event
from bot.relays.pool import RelayPool
from bot.relays.tasks import cancel_all
from storage import LedgerError, Outbox, OutboxItem, OutgoingEvent, RequestOp

log = logging.getLogger(__name__)

RETRY_S: Final = 5.0
PUBLISH_TIMEOUT_S: Final = 10.0


class Publisher:
    def __init__(self, outbox: Outbox, pool: RelayPool, lists: RelayLists, *,
                 concurrency: int = 32) -> None:
        self.outbox = outbox
        self.pool = pool
        self.lists = lists
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._accepted: list[str] = []  # accepted by a relay, not marked sent yet
        self._marking = False
        self.published = 0

    async def send(self, key: str, events: Sequence[Event], *, recipient: str | None,
                   protocol: str, arrival: Sequence[str] = (), request_id: str | None = None,
                   request_op: RequestOp | None = None,
                   all_to_asker: bool = False) -> bool:
        """Store and publish one message (False: ``key`` was stored before, nothing sent now).
        ``events[0]`` is the one addressed to ``recipient`` (a NIP-17 self copy follows it);
        ``all_to_asker``: every event is (a NIP-90 result and its ``success`` feedback)."""
        targets = tuple(dict.fromkeys(arrival))
        known = self.lists.known(recipient, protocol) if recipient else None
        rows = []
        for i, ev in enumerate(events):
            to_asker = (i == 0 or all_to_asker) and recipient is not None
            relays = targets + (known or ()) if to_asker else ()
            rows.append(OutgoingEvent(ev.id, ev.to_json(), recipient if to_asker else None,
                                      tuple(dict.fromkeys(relays))))
        for ev in events:  # known before any relay can echo them back to the inbox
            self.pool.ignore_echo(ev.id)
        added = await self.outbox.add(key, rows, request_id=request_id,
                                      request_op=request_op)
        if not added:
            return False
        for ev, row in zip(events, rows, strict=True):
            self._spawn(self._publish(ev, row.relays))
        if recipient is not None and known is None:
            self._spawn(self._late_route(events[0], recipient, protocol, targets))
        return True

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, event: Event, extra: Sequence[str]) -> None:
        if event.id in self._inflight:
            return
        self._inflight.add(event.id)
        accepted = False
        try:
            async with self._slots:
                own = set(self.pool.urls)
                outside = [u for u in extra if u not in own]
                results = [await self.pool.publish(event, timeout_s=PUBLISH_TIMEOUT_S)]
                if outside:
                    results.append(await self.pool.publish_to(event, outside,
                                                              timeout_s=PUBLISH_TIMEOUT_S))
            if any(r.ok for r in results):
                accepted = True  # in flight until marked sent: never claimed again before
                self.published += 1
                self._accepted.append(event.id)
                if not self._marking:
                    self._marking = True
                    self._spawn(self._mark_accepted())
            else:
                await self.outbox.mark_attempt(event.id)
                log.warning("outbox: %s not accepted yet (%s); will retry", event.id[:12],
                            "; ".join(f"{k}: {v}" for r in results for k, v in r.refused.items())
                            or "no answer")
                self._wake.set()
        finally:
            if not accepted:
                self._inflight.discard(event.id)

    async def _mark_accepted(self) -> None:
        """Mark every accepted event sent, in one write per batch, until none is left."""
        try:
            while self._accepted:
                batch, self._accepted = self._accepted, []
                try:
                    await self.outbox.mark_sent(batch)
                except LedgerError as exc:  # still pending: published again later, the same
                    log.warning("outbox: %d accepted events not marked sent: %s", len(batch),
                                exc)
                self._inflight.difference_update(batch)
        finally:
            self._marking = False

    async def _late_route(self, event: Event, recipient: str, protocol: str,
                          already: Sequence[str]) -> None:
        await self.lists.lookup(recipient)
        found = self.lists.known(recipient, protocol) or ()
        extra = [u for u in found if u not in already]
        if extra:
            result = await self.pool.publish_to(event, extra, timeout_s=PUBLISH_TIMEOUT_S)
            log.debug("outbox: %s also sent to %d of the asker's relays", event.id[:12],
                      len(result.accepted))

    async def run(self) -> None:
        """Republish pending events (left by an earlier process, refused, or another replica's
        whose lease expired) until accepted; another live replica's are left to it."""
        while True:
            for item in await self.outbox.claim_pending():
                if item.event_id not in self._inflight:
                    self._spawn(self._republish(item))
            self._wake.clear()
            try:
                async with asyncio.timeout(RETRY_S):
                    await self._wake.wait()
                await asyncio.sleep(RETRY_S)  # a refusal: back off before retrying
            except TimeoutError:
                pass

    async def _republish(self, item: OutboxItem) -> None:
        try:
            event = Event.from_json(item.event)
        except ValueError:
            log.error("outbox: stored event %s does not parse; left pending", item.event_id)
            return
        self.pool.ignore_echo(event.id)
        await self._publish(event, item.relays)

    async def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for publishes in flight; how many events are still pending."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        await cancel_all(list(self._tasks))
        accepted, self._accepted = self._accepted, []
        with contextlib.suppress(LedgerError):  # left pending: published again at the restart
            await self.outbox.mark_sent(accepted)
        return len(await self.outbox.pending())
