"""Messages out: stored, then published until they reach where the asker reads, exactly the
same events.

``Publisher.send(key, events, ...)`` stores the signed events in the ledger's outbox
(``storage.Outbox``; a key is stored once, so a message built twice is sent once) and publishes
them at once: to the agent's write relays, to the relays the request arrived on, and — for the
event addressed to the asker — to the asker's own relays when they are known (kind 10050 for
NIP-17, kind-10002 read relays for NIP-04). An asker's lists not known yet are looked up after
that first publish (the first reply never waits) and the event is sent there too.

Delivered means accepted where the asker reads: by one of their listed relays when they have a
list, else by one of the relays their request came through; an event with no asker (a NIP-17
self copy) by any relay. While the asker's lists cannot be looked up (no read relay answers),
where they read is unknown and the event is not delivered. Until then it stays pending, and
``run()`` retries pending events — at start, whatever a previous process left pending — as the
very same events (routed to the asker's lists like the first publish). An asker's relays that
keep refusing or stay unreachable for ``delivery_window_s`` after the event was stored stop
holding it back: from then on any relay's acceptance marks it sent (and a warning says so).
Relays of the agent's own set that are not write relays are never published to. Retries have
their own ``concurrency`` slots, so that those waiting on an asker's dead relay never hold up a
message's first publish.
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
from bot.nostr.nip04 import KIND_ENCRYPTED_DM
from bot.nostr.nip59 import KIND_GIFT_WRAP
from bot.nostr.nip65 import relay_key
from bot.relays.pool import RelayPool
from bot.relays.tasks import cancel_all
from storage import LedgerError, Outbox, OutboxItem, OutgoingEvent, RequestOp

log = logging.getLogger(__name__)

RETRY_S: Final = 5.0
PUBLISH_TIMEOUT_S: Final = 10.0
DELIVERY_WINDOW_S: Final = 900
"""How long (seconds after it was stored) an event waits for the asker's own relays."""


class Publisher:
    def __init__(self, outbox: Outbox, pool: RelayPool, lists: RelayLists, *,
                 concurrency: int = 32, delivery_window_s: int = DELIVERY_WINDOW_S) -> None:
        self.outbox = outbox
        self.delivery_window_s = delivery_window_s
        self.pool = pool
        self.lists = lists
        # a message's first publish and the retries each have their own ``concurrency`` slots:
        # retries waiting out an asker's dead relay (each up to the publish timeout) never
        # hold up a new reply
        self._slots = asyncio.Semaphore(concurrency)
        self._retry_slots = asyncio.Semaphore(concurrency)
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
        targets = self._pool_form(arrival)
        known = self.lists.known(recipient, protocol) if recipient else None
        if known is not None:
            known = self._pool_form(known)
        rows = []
        for i, ev in enumerate(events):
            to_asker = (i == 0 or all_to_asker) and recipient is not None
            relays = tuple(dict.fromkeys(targets + (known or ()))) if to_asker else ()
            deliver_to = (known or targets) if to_asker else ()
            rows.append(OutgoingEvent(ev.id, ev.to_json(), recipient if to_asker else None,
                                      relays, deliver_to))
        for ev in events:  # known before any relay can echo them back to the inbox
            self.pool.ignore_echo(ev.id)
        added = await self.outbox.add(key, rows, request_id=request_id,
                                      request_op=request_op)
        if not added:
            return False
        stored = self.outbox.clock()
        for ev, row in zip(events, rows, strict=True):
            route = (row.recipient, protocol) if row.recipient and known is None else None
            self._spawn(self._publish(ev, row.relays, row.deliver_to, stored, route,
                                      retry=False))
        return True

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, event: Event, relays: tuple[str, ...],
                       deliver_to: tuple[str, ...], stored_at: int,
                       route: tuple[str, str] | None, *, retry: bool) -> None:
        """Publish ``event``; mark it sent once delivered (see the module docstring), else count
        the attempt. ``route``: the asker and protocol whose lists to look up meanwhile;
        ``retry``: a pending event published again (not a message's first publish)."""
        if event.id in self._inflight:
            return
        self._inflight.add(event.id)
        accepted = False
        try:
            async with self._retry_slots if retry else self._slots:
                taken, refused = await self._spread(event, relays)
            unknown = False  # where the asker reads could not be looked up
            if route is not None:
                routed = await self._route(event, relays, deliver_to, route, taken, refused)
                if routed is None:
                    unknown = True
                    refused.setdefault("*", "the asker's relay lists could not be looked up")
                else:
                    deliver_to = routed
            wanted = [u for u in deliver_to if self._may_publish(u)]
            delivered = not unknown and bool(taken.intersection(wanted) if wanted else taken)
            if taken and not delivered and (
                    self.outbox.clock() - stored_at >= self.delivery_window_s):
                log.warning("outbox: %s not taken by the asker's relays in %d s; sent to %d "
                            "other relays", event.id[:12], self.delivery_window_s, len(taken))
                delivered = True
            if delivered:
                accepted = True  # in flight until marked sent: never claimed again before
                self.published += 1
                self._accepted.append(event.id)
                if not self._marking:
                    self._marking = True
                    self._spawn(self._mark_accepted())
            else:
                await self.outbox.mark_attempt(event.id)
                log.warning("outbox: %s not delivered yet (%s); will retry", event.id[:12],
                            "; ".join(f"{k}: {v}" for k, v in refused.items()) or "no answer")
                self._wake.set()
        finally:
            if not accepted:
                self._inflight.discard(event.id)

    def _pool_form(self, urls: Sequence[str]) -> tuple[str, ...]:
        """``urls`` once each, those of the agent's own relays written as its config writes
        them (an asker's list may name one with a trailing slash, say): one relay, one URL."""
        own = {relay_key(u): u for u in self.pool.urls}
        return tuple(dict.fromkeys(own.get(relay_key(u), u) for u in urls))

    def _may_publish(self, url: str) -> bool:
        """Not one of the agent's own relays that the operator keeps for reading only."""
        return url in self.pool.write_urls or url not in self.pool.urls

    async def _spread(self, event: Event, relays: Sequence[str]
                      ) -> tuple[set[str], dict[str, str]]:
        """Publish to ``relays`` (each one's answer awaited) and, at once, to the agent's other
        write relays (until the first of them accepts). The relays that accepted, the others'
        refusals."""
        named = [u for u in relays if self._may_publish(u)]
        others = [u for u in self.pool.write_urls if u not in named]
        calls = []
        if named:
            calls.append(self.pool.publish_to(event, named, timeout_s=PUBLISH_TIMEOUT_S))
        if others or not named:
            calls.append(self.pool.publish(event, relays=others, timeout_s=PUBLISH_TIMEOUT_S))
        results = await asyncio.gather(*calls)
        return ({u for r in results for u in r.accepted},
                {u: m for r in results for u, m in r.refused.items()})

    async def _route(self, event: Event, relays: tuple[str, ...], deliver_to: tuple[str, ...],
                     route: tuple[str, str], taken: set[str], refused: dict[str, str]
                     ) -> tuple[str, ...] | None:
        """Where the event must arrive: the asker's lists (looked up unless known; ``None``
        when the look-up got no answer) when they name relays, which then get it too (and are
        recorded while it is not delivered, so retries go there, unless the stored row says so
        already), else ``deliver_to`` as it was."""
        recipient, protocol = route
        found = self.lists.known(recipient, protocol)
        if found is None:
            await self.lists.lookup(recipient)
            found = self.lists.known(recipient, protocol)
        if found is None:
            return None
        if not found:
            return deliver_to
        found = self._pool_form(found)
        extra = tuple(u for u in found if u not in relays and self._may_publish(u))
        if extra:
            result = await self.pool.publish_to(event, extra, timeout_s=PUBLISH_TIMEOUT_S)
            taken.update(result.accepted)
            refused.update(result.refused)
            log.debug("outbox: %s also sent to %d of the asker's relays", event.id[:12],
                      len(result.accepted))
        if not taken.intersection(found) and (extra or found != deliver_to):
            try:
                await self.outbox.route(event.id, relays + extra, found)
            except LedgerError as exc:  # retried to the relays stored before
                log.warning("outbox: the asker's relays for %s not recorded: %s",
                            event.id[:12], exc)
        return found

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
        # the asker's lists may never have been looked up (the process that stored the event
        # died first, or gave up at stop): routed from here as at the first publish
        route = None if item.recipient is None else (item.recipient, _protocol_of(event))
        await self._publish(event, item.relays, item.deliver_to, item.created_at, route,
                            retry=True)

    async def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for publishes in flight; how many events are still pending."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        await cancel_all(list(self._tasks))
        accepted, self._accepted = self._accepted, []
        with contextlib.suppress(LedgerError):  # left pending: published again at the restart
            await self.outbox.mark_sent(accepted)
        return await self.outbox.backlog()


def _protocol_of(event: Event) -> str:
    """Which of the asker's lists an event addressed to them goes to (``RelayLists.known``):
    their DM relays for a gift wrap, their read relays for a NIP-04 message or a NIP-90 event."""
    if event.kind == KIND_GIFT_WRAP:
        return "nip17"
    return "nip04" if event.kind == KIND_ENCRYPTED_DM else "nip90"
