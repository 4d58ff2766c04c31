"""``RelayPool``: the agent's relays, as one place to subscribe and publish.

Events in
    Each read relay gets one REQ per subscription. An event whose id is in a bounded
    in-memory set of recent ids (delivered already from another relay or before a reconnect,
    or made here: ``ignore_echo``) is dropped before it is parsed; any other is verified (id
    recomputed, signature checked) by the parser, then deduplicated against that set and the
    durable ``SeenStore.claim`` (restarts).
    Survivors are handed to the subscription's handler by a single dispatcher task, up to
    ``handler_concurrency`` at once: the events of one author (``event.pubkey``) in arrival
    order, those of different authors side by side (a handler that records its event waits for
    a commit; 100 gift wraps from 100 one-time keys share a few instead of queuing for 100).
    Handlers should be quick (queue real work elsewhere).

Cursors
    After a relay's stored events (EOSE) and then every ``checkpoint_interval_s`` while live,
    the pool queues a checkpoint behind the events already received; when the dispatcher
    reaches it, it waits until every earlier event has been handled, then stores
    ``set_cursor(relay, t)``.
    A (re)subscription asks for ``since = cursor - lookback_s`` (or ``now - lookback_s`` the
    first time): the look-back must cover gift wraps, whose outer ``created_at`` is up to two
    days in the past (``GIFT_WRAP_LOOKBACK_S``). Re-delivered events are dropped by dedupe.

Events out
    ``publish`` sends to every write relay at once and returns when one relay accepted (or all
    gave up, or the timeout passed); the other relays keep trying in the background.
    ``rate-limited:`` answers and lost connections are retried with backoff until the timeout,
    ``auth-required:`` triggers NIP-42 AUTH and one retry, ``duplicate:`` counts as accepted,
    and a frame longer than the relay's NIP-11 ``max_message_length`` is not sent at all.

Stopping
    ``stop`` always returns in bounded time: each connection's close handshake is bounded (a dead
    or stalled relay gets its socket dropped), background tasks are cancelled until they end
    (``bot.relays.tasks``), and the dispatcher gets ``drain_timeout_s`` to finish the events
    already received before it is cancelled (a handler that never returns cannot hold it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from bot.nostr.event import Event
from bot.nostr.keys import Keys
from bot.nostr.nip65 import is_relay_url
from bot.relays.backoff import DEFAULT_BACKOFF, BackoffPolicy, Rand, backoff_delays
from bot.relays.config import RelayConfig
from bot.relays.connection import OkResult, RelayConnection
from bot.relays.dedupe import MemoryStore, RecentIds, SeenStore
from bot.relays.messages import Filter, event_message
from bot.relays.status import RelayStatus
from bot.relays.tasks import cancel_all, cancel_and_wait

log = logging.getLogger("bot.relays")

GIFT_WRAP_LOOKBACK_S: Final = 2 * 24 * 3600 + 3600
"""Two days (NIP-59's timestamp randomization) plus an hour of clock skew."""
DEFAULT_LOOKBACK_S: Final = 15 * 60
LIVE_MARGIN_S: Final = 60
PUBLISH_RETRY: Final = BackoffPolicy(base_s=1.0, factor=2.0, cap_s=8.0, jitter=0.5)

Handler = Callable[[Event, str], Awaitable[None]]
"""``handler(event, relay_url)``: called once per new event of a subscription."""


@dataclass(frozen=True, slots=True)
class Subscription:
    sub_id: str
    filters: tuple[Mapping[str, Any], ...]
    handler: Handler = field(compare=False)
    lookback_s: int
    durable_claim: bool = True


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Per-relay outcome of one publish. ``ok`` when at least one relay accepted it."""

    event_id: str
    accepted: tuple[str, ...]
    refused: Mapping[str, str]
    pending: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return bool(self.accepted)


@dataclass(frozen=True, slots=True)
class QueryResult:
    """A one-shot query's events (newest first) and the read relays that answered it."""

    events: list[Event]
    answered: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Delivery:
    sub: Subscription
    event: Event
    relay_url: str


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    relay_url: str
    since: int


@dataclass(slots=True)
class _Fetch:
    events: dict[str, Event]
    waiting: set[str]
    done: asyncio.Event


_STOP: Final = object()


class RelayPool:
    def __init__(self, relays: Sequence[RelayConfig], *, keys: Keys | None = None,
                 store: SeenStore | None = None, http_client: httpx.AsyncClient | None = None,
                 backoff: BackoffPolicy = DEFAULT_BACKOFF, rand: Rand = random.random,
                 clock: Callable[[], float] = time.time, ping_interval_s: float | None = 20.0,
                 checkpoint_interval_s: float = 30.0, recent_capacity: int = 100_000,
                 queue_size: int = 10_000, drain_timeout_s: float = 10.0,
                 handler_concurrency: int = 32) -> None:
        if not relays:
            raise ValueError("a relay pool needs at least one relay")
        self.keys = keys
        self.store: SeenStore = store if store is not None else MemoryStore()
        self._clock = clock
        self._rand = rand
        self._checkpoint_interval_s = checkpoint_interval_s
        self._drain_timeout_s = drain_timeout_s
        if handler_concurrency < 1:
            raise ValueError("handler_concurrency must be at least 1")
        self._handler_concurrency = handler_concurrency
        self._recent = RecentIds(recent_capacity)
        self._subs: dict[str, Subscription] = {}
        self._fetches: dict[str, _Fetch] = {}
        self._backoff = backoff
        self._http = http_client
        self._next_sub = 0
        self._queue: asyncio.Queue[_Delivery | _Checkpoint | object] = asyncio.Queue(queue_size)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[OkResult]] = set()
        self._running = False
        self.duplicates_dropped = 0
        self.handler_errors = 0
        self.cursors_frozen = False
        self._conns = [
            RelayConnection(cfg, keys=keys, on_event=self._on_event, on_eose=self._on_eose,
                            subscriptions=self._subscriptions_for, backoff=backoff, rand=rand,
                            http_client=http_client, ping_interval_s=ping_interval_s,
                            held=self._held)
            for cfg in relays
        ]

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._tasks = [asyncio.create_task(self._dispatch(), name="relay pool dispatcher"),
                       asyncio.create_task(self._checkpoints(), name="relay pool checkpoints")]
        for conn in self._conns:
            conn.start()

    async def stop(self) -> None:
        """Close every connection, finish handling what was received, store the cursors."""
        if not self._running:
            return
        self._running = False
        await asyncio.gather(*(conn.stop() for conn in self._conns))
        await cancel_all(list(self._background))
        dispatcher, checkpoints = self._tasks
        self._tasks = []
        await cancel_and_wait(checkpoints)
        # Let the dispatcher finish what was received; a handler that does not return (its
        # consumer is gone, or it waits on something dead) must not hold the shutdown forever.
        try:
            async with asyncio.timeout(self._drain_timeout_s):
                await self._queue.put(_STOP)
                await asyncio.shield(dispatcher)
        except TimeoutError:
            log.warning("relay pool: handlers did not finish within %.1fs; cancelled",
                        self._drain_timeout_s)
        finally:
            await cancel_and_wait(dispatcher)

    async def __aenter__(self) -> RelayPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def status(self) -> list[RelayStatus]:
        return [conn.status() for conn in self._conns]

    @property
    def urls(self) -> list[str]:
        return [conn.url for conn in self._conns]

    @property
    def write_urls(self) -> list[str]:
        """The pool's relays that take what the agent publishes (``write = true``)."""
        return [conn.url for conn in self._conns if conn.config.write]

    async def wait_connected(self, timeout_s: float, *, all_relays: bool = False) -> bool:
        """Wait until one relay (or every relay) is connected."""
        waits = [asyncio.create_task(c.wait_connected(timeout_s)) for c in self._conns]
        if all_relays:
            return all(await asyncio.gather(*waits))
        try:
            for next_done in asyncio.as_completed(waits):
                if await next_done:
                    return True
            return False
        finally:
            for task in waits:
                task.cancel()

    # -- subscriptions ---------------------------------------------------------------------
    async def subscribe(self, filters: Iterable[Mapping[str, Any]], handler: Handler, *,
                        lookback_s: int = DEFAULT_LOOKBACK_S,
                        durable_claim: bool = True) -> Subscription:
        """Register a subscription on every read relay (now, and after every reconnect).

        With ``durable_claim`` (the default) each event id is claimed in the store just before
        the handler runs: at most once across restarts. ``durable_claim=False`` is for handlers
        that are idempotent themselves (e.g. zap receipts, whose ledger key is the payment hash):
        duplicates are still dropped in memory, but an event whose handling a crash interrupted
        is handed over again after the restart: at least once, counted once by the handler."""
        frozen = tuple(dict(f) for f in filters)
        if not frozen:
            raise ValueError("a subscription needs at least one filter")
        self._next_sub += 1
        sub = Subscription(f"timmy{self._next_sub}", frozen, handler, lookback_s, durable_claim)
        self._subs[sub.sub_id] = sub
        for conn in self._conns:
            if conn.config.read and conn.connected:
                await conn.send_req(sub.sub_id, await self._filters_for(conn, sub))
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        self._subs.pop(sub.sub_id, None)
        for conn in self._conns:
            await conn.send_close(sub.sub_id)

    async def _filters_for(self, conn: RelayConnection, sub: Subscription) -> list[Filter]:
        return self._since_filters(sub, await self.store.cursor(conn.url))

    def _since_filters(self, sub: Subscription, cursor: int | None) -> list[Filter]:
        base = int(self._clock()) if cursor is None else cursor
        since = max(0, base - sub.lookback_s)
        out: list[Filter] = []
        for f in sub.filters:
            given = f.get("since")
            out.append({**f, "since": max(since, given) if isinstance(given, int) else since})
        return out

    async def _subscriptions_for(self, conn: RelayConnection) -> list[tuple[str, list[Filter]]]:
        if not conn.config.read or not self._subs:
            return []
        cursor = await self.store.cursor(conn.url)  # read once per (re)connection
        return [(s.sub_id, self._since_filters(s, cursor)) for s in list(self._subs.values())]

    def _held(self, sub_id: str, event_id: str) -> bool:
        """Whether a subscription's event of this id was delivered already (or made here: see
        ``ignore_echo``): a relay sending it (again) has it dropped before it is parsed or its
        signature checked, and counted in ``duplicates_dropped``."""
        if sub_id in self._subs and event_id in self._recent:
            self.duplicates_dropped += 1
            return True
        return False

    def ignore_echo(self, event_id: str) -> None:
        """``event_id`` is an event made here (e.g. a NIP-17 self copy, p-tagged to our own
        key): when a relay sends it back to a subscription, drop it unread."""
        self._recent.add(event_id)

    async def _on_event(self, conn: RelayConnection, sub_id: str, event: Event) -> None:
        fetch = self._fetches.get(sub_id)
        if fetch is not None:
            fetch.events.setdefault(event.id, event)
            return
        sub = self._subs.get(sub_id)
        if sub is None:
            return
        if not self._recent.add(event.id):
            self.duplicates_dropped += 1
            return
        await self._queue.put(_Delivery(sub, event, conn.url))

    async def _on_eose(self, conn: RelayConnection, sub_id: str) -> None:
        fetch = self._fetches.get(sub_id)
        if fetch is not None:
            fetch.waiting.discard(conn.url)
            if not fetch.waiting:
                fetch.done.set()
        if sub_id in self._subs and conn.eose_done:  # all of this relay's stored events seen
            await self._queue.put(_Checkpoint(conn.url, int(self._clock()) - LIVE_MARGIN_S))

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self._checkpoint_interval_s)
            now = int(self._clock())
            for conn in self._conns:
                if conn.connected and conn.eose_done and conn.config.read and self._subs:
                    await self._queue.put(_Checkpoint(conn.url, now - LIVE_MARGIN_S))

    async def _dispatch(self) -> None:
        """Start a handler task per delivery (see the module docstring); a checkpoint waits for
        every task started before it. Cancelled, it cancels the tasks it started."""
        running: set[asyncio.Task[None]] = set()
        last_of: dict[str, asyncio.Task[None]] = {}  # each author's latest delivery
        slots = asyncio.Semaphore(self._handler_concurrency)
        try:
            while True:
                item = await self._queue.get()
                if item is _STOP:
                    break
                if isinstance(item, _Delivery):
                    await slots.acquire()
                    author = item.event.pubkey
                    task = asyncio.create_task(self._handle(item, last_of.get(author), slots))
                    running.add(task)
                    last_of[author] = task
                    task.add_done_callback(running.discard)
                    task.add_done_callback(functools.partial(_forget, last_of, author))
                elif isinstance(item, _Checkpoint):
                    if running:
                        await asyncio.wait(set(running))
                    if not self.cursors_frozen:
                        try:
                            await self.store.set_cursor(item.relay_url, item.since)
                        except Exception:
                            self.handler_errors += 1
                            log.exception("relay pool: storing a cursor failed")
            if running:
                await asyncio.wait(set(running))
        finally:
            await cancel_all(list(running))

    async def _handle(self, item: _Delivery, after: asyncio.Task[None] | None,
                      slot: asyncio.Semaphore) -> None:
        """One delivery, once its author's previous one (``after``) is done."""
        try:
            if after is not None:
                await asyncio.wait({after})
            await self._deliver(item)
        except Exception:
            self.handler_errors += 1
            log.exception("relay pool: handling failed")
        finally:
            slot.release()

    async def _deliver(self, item: _Delivery) -> None:
        if not item.sub.durable_claim:
            await item.sub.handler(item.event, item.relay_url)
            return
        try:
            fresh = await self.store.claim(item.event.id)
        except Exception:
            # The event was not recorded: keep every cursor where it is, so that after a
            # restart the relays send it (and what follows) again.
            self.cursors_frozen = True
            log.exception("relay pool: the intake store failed; cursors frozen until restart")
            return
        if not fresh:
            self.duplicates_dropped += 1
            return
        await item.sub.handler(item.event, item.relay_url)

    async def fetch(self, filters: Iterable[Mapping[str, Any]], *,
                    timeout_s: float = 5.0) -> list[Event]:
        """A one-shot query of the read relays (a profile, a relay list...): the verified,
        deduplicated events they hold, newest first, once every relay sent EOSE or at the
        timeout. Nothing goes through the handlers, nothing is claimed."""
        return (await self.query(filters, timeout_s=timeout_s)).events

    async def query(self, filters: Iterable[Mapping[str, Any]], *,
                    timeout_s: float = 5.0) -> QueryResult:
        """``fetch``, telling also which read relays answered it (sent EOSE): none means the
        events found say nothing of what the relays hold (none connected, or all too slow)."""
        frozen = [dict(f) for f in filters]
        if not frozen:
            raise ValueError("a query needs at least one filter")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._next_sub += 1
        sub_id = f"timmyq{self._next_sub}"
        state = _Fetch({}, set(), asyncio.Event())
        self._fetches[sub_id] = state
        targets = [c for c in self._conns if c.config.read]
        try:
            await self.wait_connected(timeout_s)
            asked = []
            for conn in targets:
                if conn.connected:
                    state.waiting.add(conn.url)
                    if await conn.send_req(sub_id, frozen):
                        asked.append(conn.url)
                    else:
                        state.waiting.discard(conn.url)
            if state.waiting:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await state.done.wait()
        finally:
            self._fetches.pop(sub_id, None)
            for conn in targets:
                await conn.send_close(sub_id)
        return QueryResult(sorted(state.events.values(), key=lambda e: (-e.created_at, e.id)),
                           tuple(u for u in asked if u not in state.waiting))

    async def claim(self, key: str) -> bool:
        """Dedupe anything else (e.g. a gift wrap's rumor id): True only the first time."""
        if not self._recent.add(key):
            return False
        return await self.store.claim(key)

    # -- publishing ------------------------------------------------------------------------
    async def publish(self, event: Event, *, timeout_s: float = 10.0,
                      relays: Iterable[str] | None = None, wait_all: bool = False
                      ) -> PublishResult:
        """Send ``event`` to the write relays (or to those of ``relays`` that are pool write
        relays: others are ignored). Returns at the first acceptance unless ``wait_all``."""
        if not self._running:
            return PublishResult(event.id, (), {"*": "error: the pool is not running"})
        wanted = None if relays is None else set(relays)
        targets = [c for c in self._conns
                   if c.config.write and (wanted is None or c.url in wanted)]
        if not targets:
            return PublishResult(event.id, (), {"*": "error: no write relay to publish to"})
        frame = event_message(event)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        tasks = {asyncio.create_task(self._publish_one(c, event, frame, deadline)): c.url
                 for c in targets}
        results: dict[str, OkResult] = {}
        waiting = set(tasks)
        while waiting:
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                results[tasks[task]] = task.result()
            if not wait_all and any(r.accepted for r in results.values()):
                break
        for task in waiting:  # keep trying the slower relays in the background
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        accepted = tuple(url for url, r in results.items() if r.accepted)
        refused = {url: r.message for url, r in results.items() if not r.accepted}
        if not accepted:
            log.warning("publish %s: refused everywhere: %s", event.id, refused)
        return PublishResult(event.id, accepted, refused,
                             tuple(tasks[t] for t in waiting))

    async def publish_to(self, event: Event, urls: Iterable[str], *,
                         timeout_s: float = 10.0) -> PublishResult:
        """Publish to specific relays, connecting for this event alone to those outside the
        pool (e.g. the recipient's NIP-17 DM relays, kind 10050). Waits for every relay."""
        if not self._running:
            return PublishResult(event.id, (), {"*": "error: the pool is not running"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        frame = event_message(event)
        pool_conns = {c.url: c for c in self._conns}
        temporary: list[RelayConnection] = []
        refused: dict[str, str] = {}
        jobs: dict[str, Awaitable[OkResult]] = {}
        for url in dict.fromkeys(urls):
            if not is_relay_url(url):
                refused[url] = "invalid: not a ws:// or wss:// URL"
                continue
            conn = pool_conns.get(url)
            if conn is None:
                conn = RelayConnection(
                    RelayConfig(url, read=False, write=True), keys=self.keys,
                    on_event=self._on_event, on_eose=self._on_eose,
                    subscriptions=_no_subscriptions, backoff=self._backoff, rand=self._rand,
                    http_client=self._http, ping_interval_s=None)
                temporary.append(conn)
                conn.start()
            jobs[url] = self._publish_one(conn, event, frame, deadline)
        try:
            results = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
        finally:
            await asyncio.gather(*(conn.stop() for conn in temporary))
        accepted = tuple(url for url, r in results.items() if r.accepted)
        refused.update({url: r.message for url, r in results.items() if not r.accepted})
        return PublishResult(event.id, accepted, refused)

    async def _publish_one(self, conn: RelayConnection, event: Event, frame: str,
                           deadline: float) -> OkResult:
        loop = asyncio.get_running_loop()
        delays = backoff_delays(PUBLISH_RETRY, self._rand)
        tried_auth = False
        result = OkResult(False, "error: timeout before sending")
        while True:
            limit = conn.max_message_length
            if limit is not None and len(frame.encode("utf-8")) > limit:
                return OkResult(False, f"too-large: {len(frame)} bytes over the relay's "
                                       f"max_message_length {limit}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                return result
            if not self._running:
                return OkResult(False, "error: the pool stopped")
            result = await conn.publish(event, frame, remaining)
            if result.accepted:
                return result
            prefix = result.prefix
            if prefix == "duplicate":
                return OkResult(True, result.message)
            if prefix in ("auth-required", "restricted") and not tried_auth and self.keys:
                # authenticate (again: the EVENT may have raced the relay's challenge), retry once
                tried_auth = True
                if await conn.authenticate():
                    continue
                conn.mark_auth_failed(f"{prefix} and AUTH failed: {result.message}")
                return result
            if prefix in ("rate-limited", "error"):
                pause = min(next(delays), deadline - loop.time())
                if pause <= 0:
                    return result
                await asyncio.sleep(pause)
                continue
            if prefix in ("restricted", "auth-required") and conn.authenticated:
                conn.mark_auth_failed(f"refused after AUTH: {result.message}")
            return result


async def _no_subscriptions(conn: RelayConnection) -> list[tuple[str, list[Filter]]]:
    return []


def _forget(last_of: dict[str, asyncio.Task[None]], author: str, done: asyncio.Task[None]
            ) -> None:
    """``done`` ended: unless a later delivery of ``author`` follows it, forget the author."""
    if last_of.get(author) is done:
        del last_of[author]
