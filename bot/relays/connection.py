"""One relay connection: connect, answer AUTH, (re)send subscriptions, match OKs, reconnect.

The connection owns no policy about events: verified events and end-of-stored-events go to
callbacks given by the pool. It reconnects on its own with the injected backoff, forever, until
``stop``. Protocol parsing is in ``messages`` (sans-I/O); this module only moves frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect

from bot.nostr import nip11, nip42
from bot.nostr.errors import InvalidEvent, NostrError, RelayInfoError
from bot.nostr.event import Event
from bot.nostr.keys import Keys
from bot.relays.backoff import BackoffPolicy, Rand, backoff_delays
from bot.relays.config import RelayConfig
from bot.relays.filters import matches_any
from bot.relays.messages import (
    AuthChallenge,
    ClosedMessage,
    EoseMessage,
    EventMessage,
    Filter,
    HeldEventMessage,
    IsHeld,
    NoticeMessage,
    OkMessage,
    auth_message,
    close_message,
    ok_prefix,
    parse_relay_message,
    req_message,
)
from bot.relays.status import RelayState, RelayStatus
from bot.relays.tasks import cancel_and_wait

log = logging.getLogger("bot.relays")

STABLE_AFTER_S: Final = 10.0
"""A connection that lasted this long resets the backoff schedule."""
AUTH_OK_WAIT_S: Final = 2.0
SEND_TIMEOUT_S: Final = 10.0
"""A frame the relay does not take in this long (it stopped reading): the connection is dropped."""
CLOSE_TIMEOUT_S: Final = 3.0
"""The close handshake gets this long; then the socket is dropped without one."""
MAX_LOGGED_CHARS: Final = 200

EventSink = Callable[["RelayConnection", str, Event], Awaitable[None]]
EoseSink = Callable[["RelayConnection", str], Awaitable[None]]
SubscriptionSource = Callable[["RelayConnection"], Awaitable[list[tuple[str, list[Filter]]]]]


@dataclass(frozen=True, slots=True)
class OkResult:
    """A relay's answer to one EVENT (or our own ``error:`` when no answer came)."""

    accepted: bool
    message: str

    @property
    def prefix(self) -> str:
        return ok_prefix(self.message)


def _short(text: str) -> str:
    return text if len(text) <= MAX_LOGGED_CHARS else text[:MAX_LOGGED_CHARS] + "…"


def _describe(exc: BaseException) -> str:
    return _short(f"{type(exc).__name__}: {exc}")


class RelayConnection:
    def __init__(self, config: RelayConfig, *, keys: Keys | None, on_event: EventSink,
                 on_eose: EoseSink, subscriptions: SubscriptionSource,
                 backoff: BackoffPolicy, rand: Rand = random.random,
                 http_client: httpx.AsyncClient | None = None,
                 ping_interval_s: float | None = 20.0, open_timeout_s: float = 10.0,
                 held: IsHeld | None = None) -> None:
        self.config = config
        self.url = config.url
        self._keys = keys
        self._on_event = on_event
        self._on_eose = on_eose
        self._held = held
        self._subscriptions = subscriptions
        self._backoff = backoff
        self._rand = rand
        self._http = http_client
        self._ping_interval_s = ping_interval_s
        self._open_timeout_s = open_timeout_s

        self.state = RelayState.IDLE
        self.info: nip11.RelayInfo | None = None
        self.last_error: str | None = None
        self.events_in = 0
        self.events_out = 0
        self.invalid_in = 0
        self.last_invalid: str | None = None
        self.internal_errors = 0
        self._refusals_logged = 0
        self.connects = 0
        self.authenticated = False
        self.auth_failed = False
        self.eose_done = False  # every subscription of this session reached EOSE
        self._retry_at: float | None = None
        self._challenge: str | None = None
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[OkResult]] = {}
        self._order: deque[str] = deque()
        self._active: dict[str, list[Filter]] = {}
        self._auth_retried: dict[str, bool] = {}
        self._awaiting_eose: set[str] = set()
        self._send_lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=f"relay {self.url}")

    async def stop(self) -> None:
        """Close the socket and end the loop, in bounded time even if the relay is dead or
        stopped reading (the close handshake is then skipped)."""
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            await _close(ws)
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self._fail_pending("error: pool stopped")
        self.state = RelayState.STOPPED

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float) -> bool:
        if self._connected.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout_s, 0.0)):
                await self._connected.wait()
        return self._connected.is_set()

    def status(self) -> RelayStatus:
        loop = asyncio.get_running_loop()
        retry_in = None
        if self.state is RelayState.BACKING_OFF and self._retry_at is not None:
            retry_in = max(0.0, self._retry_at - loop.time())
        return RelayStatus(
            url=self.url, read=self.config.read, write=self.config.write, state=self.state,
            authenticated=self.authenticated, auth_failed=self.auth_failed,
            last_error=self.last_error, events_in=self.events_in, events_out=self.events_out,
            invalid_in=self.invalid_in, last_invalid=self.last_invalid,
            internal_errors=self.internal_errors, connects=self.connects, retry_in_s=retry_in,
            max_message_length=self.max_message_length,
        )

    @property
    def max_message_length(self) -> int | None:
        return self.info.limitation.max_message_length if self.info is not None else None

    # -- the loop --------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delays = backoff_delays(self._backoff, self._rand)
        while not self._stopping.is_set():
            self.state = RelayState.CONNECTING
            opened_at: float | None = None
            try:
                # No permessage-deflate: frames are mostly encrypted base64, which deflate barely
                # shrinks, while it costs CPU on every frame both ways.
                async with connect(self.url, open_timeout=self._open_timeout_s,
                                   ping_interval=self._ping_interval_s,
                                   ping_timeout=self._ping_interval_s, close_timeout=2,
                                   max_size=1 << 20, compression=None, proxy=None) as ws:
                    opened_at = loop.time()
                    await self._opened(ws)
                    async for frame in ws:
                        await self.handle_frame(frame)
                    self.last_error = "connection closed by the relay"
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                self.last_error = _describe(exc)
            except Exception as exc:  # a bug must not end the reconnect loop
                log.exception("relay %s: unexpected error", self.url)
                self.last_error = _describe(exc)
            finally:
                self._closed()
            if self._stopping.is_set():
                break
            if opened_at is not None and loop.time() - opened_at >= STABLE_AFTER_S:
                delays = backoff_delays(self._backoff, self._rand)
            delay = next(delays)
            log.info("relay %s: %s; reconnecting in %.2fs", self.url, self.last_error, delay)
            self.state = RelayState.BACKING_OFF
            self._retry_at = loop.time() + delay
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
        self.state = RelayState.STOPPED

    async def _opened(self, ws: ClientConnection) -> None:
        self._ws = ws
        self.connects += 1
        self._refusals_logged = 0
        self.authenticated = False
        self._challenge = None
        self._active.clear()
        self._auth_retried.clear()
        self._awaiting_eose.clear()
        self.eose_done = False
        if self.info is None and self._http is not None:
            try:
                self.info = await nip11.fetch_relay_info(self._http, self.url, timeout_s=5.0)
            except RelayInfoError as exc:
                log.info("relay %s: no NIP-11 document (%s)", self.url, exc)
        self.state = RelayState.CONNECTED
        self._connected.set()
        log.info("relay %s: connected", self.url)
        for sub_id, filters in await self._subscriptions(self):
            await self.send_req(sub_id, filters)
        if not self._awaiting_eose:
            self.eose_done = True

    def _closed(self) -> None:
        self._ws = None
        self._connected.clear()
        self._fail_pending("error: connection lost")

    def _fail_pending(self, message: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_result(OkResult(False, message))
        self._pending.clear()
        self._order.clear()

    async def _send(self, frame: str) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            async with self._send_lock, asyncio.timeout(SEND_TIMEOUT_S):
                await ws.send(frame)
        except websockets.WebSocketException as exc:
            self.last_error = _describe(exc)
            return False
        except TimeoutError:
            self.last_error = "the relay stopped reading; connection dropped"
            ws.transport.abort()
            return False
        return True

    # -- incoming --------------------------------------------------------------------------
    async def handle_frame(self, frame: str | bytes) -> None:
        """Handle one frame from the relay. **Never raises** (cancellation aside): this is the
        one guard of the read loop. Whatever the relay got wrong — a bad frame, an invalid
        event, an AUTH challenge that cannot be answered — is refused: counted in
        ``invalid_in``, its reason kept in ``last_invalid``, logged (the first one of a
        connection at INFO, the rest at DEBUG). A bug of ours is logged with its traceback and
        counted in ``internal_errors``. The link stays up either way: reconnecting would only
        fetch the same frame again."""
        try:
            await self._dispatch_frame(frame)
        except NostrError as exc:
            self._refused(exc)
        except Exception:
            self.internal_errors += 1
            log.exception("relay %s: handling a frame failed", self.url)

    def _refused(self, exc: NostrError) -> None:
        self.invalid_in += 1
        self.last_invalid = _describe(exc)
        level = logging.DEBUG if self._refusals_logged else logging.INFO
        self._refusals_logged += 1
        log.log(level, "relay %s: refused %s%s", self.url, self.last_invalid,
                "" if level == logging.DEBUG else " (more on this connection at DEBUG)")

    async def _dispatch_frame(self, frame: str | bytes) -> None:
        msg = parse_relay_message(frame, self._held)
        if isinstance(msg, HeldEventMessage):
            if msg.sub_id in self._active:
                self.events_in += 1  # the pool holds it already: nothing to verify or deliver
            return
        if isinstance(msg, EventMessage):
            filters = self._active.get(msg.sub_id)
            if filters is None:
                return  # a late event for a subscription we closed
            if not matches_any(filters, msg.event):
                raise InvalidEvent(f"event {msg.event.id} does not match subscription "
                                   f"{msg.sub_id}")
            self.events_in += 1
            await self._on_event(self, msg.sub_id, msg.event)
        elif isinstance(msg, OkMessage):
            self._resolve_ok(msg)
        elif isinstance(msg, EoseMessage):
            self._eose_reached(msg.sub_id)
            if msg.sub_id in self._active:
                await self._on_eose(self, msg.sub_id)
        elif isinstance(msg, ClosedMessage):
            await self._handle_closed(msg)
        elif isinstance(msg, NoticeMessage):
            log.info("relay %s: NOTICE %s", self.url, _short(msg.message))
        elif isinstance(msg, AuthChallenge):
            self._challenge = msg.challenge
            await self._send_auth()

    def _eose_reached(self, sub_id: str) -> None:
        """``sub_id`` awaits no more stored events (EOSE, CLOSED, or closed by us)."""
        self._awaiting_eose.discard(sub_id)
        if not self._awaiting_eose:
            self.eose_done = True

    def _resolve_ok(self, msg: OkMessage) -> None:
        future = self._pending.pop(msg.event_id, None)
        if future is not None:
            with contextlib.suppress(ValueError):
                self._order.remove(msg.event_id)
        elif self._order:
            # Some relays answer a refused EVENT with an empty or odd id; they process
            # frames in order, so the answer belongs to the oldest unanswered EVENT.
            future = self._pending.pop(self._order.popleft(), None)
        if future is not None and not future.done():
            future.set_result(OkResult(msg.accepted, msg.message))

    async def _handle_closed(self, msg: ClosedMessage) -> None:
        filters = self._active.get(msg.sub_id)
        self._eose_reached(msg.sub_id)
        if filters is None:
            return
        if msg.prefix == "auth-required" and self._challenge is not None and self._keys:
            log.info("relay %s: subscription %s needs AUTH; authenticating", self.url, msg.sub_id)
            if not self._auth_retried.get(msg.sub_id) and await self._send_auth() is not None:
                self._auth_retried[msg.sub_id] = True
                await self.send_req(msg.sub_id, filters)
                return
        self._active.pop(msg.sub_id, None)
        if msg.prefix in ("auth-required", "restricted"):
            self.auth_failed = True
        self.last_error = _short(f"CLOSED {msg.sub_id}: {msg.message}")
        log.warning("relay %s: subscription %s closed: %s", self.url, msg.sub_id,
                    _short(msg.message))

    # -- outgoing --------------------------------------------------------------------------
    async def send_req(self, sub_id: str, filters: Sequence[Filter]) -> bool:
        self._active[sub_id] = list(filters)
        self._awaiting_eose.add(sub_id)
        self.eose_done = False
        return await self._send(req_message(sub_id, filters))

    async def send_close(self, sub_id: str) -> None:
        self._eose_reached(sub_id)
        if self._active.pop(sub_id, None) is not None:
            await self._send(close_message(sub_id))

    async def _send_auth(self) -> asyncio.Future[OkResult] | None:
        """Send AUTH for the last challenge; the future gets the relay's OK, if it sends one."""
        if self._keys is None or self._challenge is None:
            return None
        event = nip42.auth_event(self._keys, self.url, self._challenge)
        future: asyncio.Future[OkResult] = asyncio.get_running_loop().create_future()
        self._pending[event.id] = future  # not in _order: relays may never answer an AUTH
        if not await self._send(auth_message(event)):
            self._pending.pop(event.id, None)
            return None
        self.authenticated = True
        future.add_done_callback(self._auth_answered)
        return future

    def _auth_answered(self, future: asyncio.Future[OkResult]) -> None:
        if future.cancelled():
            return
        result = future.result()
        if result.accepted:
            self.auth_failed = False
        elif result.message != "error: connection lost":
            self.authenticated = False
            self.auth_failed = True
            self.last_error = _short(f"AUTH refused: {result.message}")
            log.warning("relay %s: AUTH refused: %s", self.url, _short(result.message))

    async def authenticate(self) -> bool:
        """Answer the last AUTH challenge and wait briefly for an OK; False if refused or
        impossible (no key, no challenge). Never call it from the read loop."""
        future = await self._send_auth()
        if future is None:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(AUTH_OK_WAIT_S):
                await asyncio.shield(future)
        if not future.done():
            # no OK for AUTH (some relays never send one): assume it worked
            for key, value in list(self._pending.items()):
                if value is future:
                    self._pending.pop(key, None)
            return True
        return future.result().accepted

    def mark_auth_failed(self, reason: str) -> None:
        self.auth_failed = True
        self.last_error = _short(reason)

    async def publish(self, event: Event, frame: str, timeout_s: float) -> OkResult:
        """Send one EVENT and wait for its OK (or an ``error:`` result)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if not await self.wait_connected(timeout_s):
            return OkResult(False, "error: not connected")
        future = self._pending.get(event.id)
        if future is None:
            future = loop.create_future()
            self._pending[event.id] = future
            self._order.append(event.id)
            if not await self._send(frame):
                self._pending.pop(event.id, None)
                with contextlib.suppress(ValueError):
                    self._order.remove(event.id)
                return OkResult(False, "error: connection lost")
        try:
            async with asyncio.timeout_at(deadline):
                result = await asyncio.shield(future)
        except TimeoutError:
            if self._pending.get(event.id) is future:
                self._pending.pop(event.id, None)
                with contextlib.suppress(ValueError):
                    self._order.remove(event.id)
            return OkResult(False, "error: no OK before the timeout")
        if result.accepted:
            self.events_out += 1
        return result


async def _close(ws: ClientConnection) -> None:
    """The close handshake, bounded; a peer that does not answer gets its socket dropped."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await ws.close()
    except Exception:  # a timeout, or a socket already broken: drop it
        ws.transport.abort()
