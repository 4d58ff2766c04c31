"""Askers: Nostr users on nostr-sdk (rust-nostr, code nobody here wrote), fresh keys each.

A :class:`Hub` is one nostr-sdk ``Client`` connected to some relays, with one background task
reading its notification stream. Askers made by a hub send through it; ``hub.watch(askers)``
subscribes (one subscription per call, so many askers cost one subscription) to kind-4 and
kind-1059 events addressed to them and hands each event to its asker, which decrypts it
(NIP-04, or NIP-59 unwrapped with ``UnwrappedGift``) and keeps it once:

- a NIP-04 reply is identified by its event id, a NIP-17 reply by its rumor id (the wraps that
  carried one rumor are kept in ``Reply.wrap_ids``: one agent reply republished is one wrap);
- ``Reply.relays`` lists every relay it was seen on; events that do not decrypt, or come from
  someone else than the agent, are kept apart (``undecryptable``, ``foreign``) so a test can
  assert there were none.

So a test can assert exactly one reply per request: the agent's replies name the request they
answer (an ``e`` tag with the request id), ``await asker.exactly(request_id, count)`` waits for
that many replies to it and then ``settle_s`` more, and fails on one more;
``exactly_one_reply(after=n)`` does the same by arrival order, for replies that name nothing.

Request ids are what the agent uses (``AGENT_CONTRACT.md``): NIP-04 → the event id, NIP-17 →
the rumor id (built here, so the test knows it before the agent does).

Also here: a NIP-17 DM dated in the past (our own ``bot.nostr.nip59``, which takes a
``created_at``), a kind-10050 DM relay list, and the malformed DMs of :class:`Malformed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import nostr_sdk as sdk

from bot.nostr import nip04, nip44, nip59
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys

Protocol = Literal["nip04", "nip17"]
REPLY_TIMEOUT_S = 20.0
SETTLE_S = 1.0
CONNECT_TIMEOUT_S = 10.0


@dataclass
class Reply:
    protocol: Protocol
    text: str
    key: str
    """The event id (NIP-04) or the rumor id (NIP-17): one reply, however often delivered."""
    event_id: str
    rumor_id: str | None
    created_at: int
    received_at: float
    """``time.monotonic()`` when it was first seen."""
    relays: set[str] = field(default_factory=set)
    wrap_ids: set[str] = field(default_factory=set)
    tags: list[list[str]] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    def tag_values(self, name: str) -> list[str]:
        return [t[1] for t in self.tags if len(t) >= 2 and t[0] == name]


@dataclass
class Request:
    id: str
    protocol: Protocol
    text: str
    event_id: str
    sent_at: float
    size: int


class NoReply(AssertionError):
    """No reply within the time allowed (the message says how long, and to what)."""


class Asker:
    """One Nostr user: fresh keys, the agent's pubkey, the replies received."""

    def __init__(self, hub: Hub, agent_pubkey: str, keys: sdk.Keys | None = None) -> None:
        self.hub = hub
        self.keys = keys or sdk.Keys.generate()
        self.public_key = self.keys.public_key()
        self.pubkey = self.public_key.to_hex()
        self.agent_pubkey = agent_pubkey
        self.agent_pk = sdk.PublicKey.parse(agent_pubkey)
        self.requests: list[Request] = []
        self.replies: list[Reply] = []
        self._by_key: dict[str, Reply] = {}
        self.undecryptable: list[str] = []
        self.foreign: list[str] = []
        self.seen_events: set[str] = set()

    def __repr__(self) -> str:
        return f"Asker({self.pubkey[:8]}, {len(self.requests)} sent, {len(self.replies)} got)"

    @property
    def bot_keys(self) -> Keys:
        """The same key as our own ``Keys`` (to build events nostr-sdk will not build)."""
        return Keys.from_hex(self.keys.secret_key().to_hex())

    # -- sending ----------------------------------------------------------------------

    def build(self, text: str, protocol: Protocol = "nip17") -> tuple[str, sdk.Event]:
        """The request event and its request id, without sending it."""
        if protocol == "nip04":
            content = self.keys.nip04_encrypt(self.agent_pk, text)
            event = (sdk.EventBuilder(sdk.Kind(4), content)
                     .tags([sdk.Tag.public_key(self.agent_pk)]).finalize(self.keys))
            return event.id().to_hex(), event
        rumor = (sdk.EventBuilder(sdk.Kind(14), text)
                 .tags([sdk.Tag.public_key(self.agent_pk)]).finalize_unsigned(self.public_key)
                 .ensure_id())
        rumor_id = rumor.id()
        assert rumor_id is not None
        wrap = sdk.nip59_make_gift_wrap(self.keys, self.agent_pk, rumor)
        return rumor_id.to_hex(), wrap

    async def send(self, text: str, protocol: Protocol = "nip17", *,
                   via: Hub | None = None) -> str:
        """Send a DM to the agent; returns the request id."""
        request_id, event = self.build(text, protocol)
        await self.send_event(event, request_id, protocol, text, via=via)
        return request_id

    async def send_event(self, event: sdk.Event, request_id: str, protocol: Protocol, text: str,
                         *, via: Hub | None = None) -> None:
        self.requests.append(Request(request_id, protocol, text, event.id().to_hex(),
                                     time.monotonic(), len(event.as_json())))
        await (via or self.hub).publish(event)

    async def send_dated(self, text: str, created_at: int, *, via: Hub | None = None) -> str:
        """A NIP-17 DM whose wrap and seal are dated ``created_at`` (e.g. two days back)."""
        keys = self.bot_keys
        rumor = nip59.Rumor.create(keys.public_hex, 14, text, [["p", self.agent_pubkey]],
                                   created_at=created_at)
        sealed = nip59.seal(keys, rumor, self.agent_pubkey, created_at=created_at)
        wrap = nip59.gift_wrap(sealed, self.agent_pubkey, created_at=created_at)
        await self.send_event(sdk.Event.from_json(wrap.to_json()), rumor.id, "nip17", text,
                              via=via)
        return rumor.id

    async def publish_dm_relays(self, urls: Sequence[str], *, via: Hub | None = None) -> str:
        """Publish this asker's kind-10050 DM relay list naming ``urls``; returns its id."""
        event = (sdk.EventBuilder(sdk.Kind(10050), "")
                 .tags([sdk.Tag.parse(["relay", u]) for u in urls]).finalize(self.keys))
        await (via or self.hub).publish(event)
        event_id: str = event.id().to_hex()
        return event_id

    # -- receiving --------------------------------------------------------------------

    def deliver(self, relay_url: str, event: sdk.Event) -> None:
        """Called by a hub for every event addressed to this asker (any relay, any repeat)."""
        event_id = event.id().to_hex()
        kind = event.kind().as_u16()
        first_sight = event_id not in self.seen_events
        self.seen_events.add(event_id)
        if kind == 4:
            if not first_sight:
                if event_id in self._by_key:
                    self._by_key[event_id].relays.add(relay_url)
                return
            if event.author().to_hex() != self.agent_pubkey:
                self.foreign.append(event_id)
                return
            try:
                text = self.keys.nip04_decrypt(event.author(), event.content())
            except Exception:  # nostr-sdk raises its own error types
                self.undecryptable.append(event_id)
                return
            self._keep(Reply("nip04", text, event_id, event_id, None,
                             event.created_at().as_secs(), time.monotonic(),
                             tags=[t.to_vec() for t in event.tags()]),
                       relay_url, None)
            return
        if kind == 1059:
            try:
                gift = sdk.UnwrappedGift.from_gift_wrap(self.keys, event)
            except Exception:  # a broken wrap: nostr-sdk raises its own error types
                if first_sight:
                    self.undecryptable.append(event_id)
                return
            if gift.sender().to_hex() != self.agent_pubkey:
                if first_sight:
                    self.foreign.append(event_id)
                return
            rumor = gift.rumor()
            rumor_id = rumor.id()
            if rumor.kind().as_u16() != 14 or rumor_id is None:
                if first_sight:
                    self.undecryptable.append(event_id)
                return
            rid = rumor_id.to_hex()
            self._keep(Reply("nip17", rumor.content(), rid, event_id, rid,
                             rumor.created_at().as_secs(), time.monotonic(),
                             tags=[t.to_vec() for t in rumor.tags()]),
                       relay_url, event_id)

    def _keep(self, reply: Reply, relay_url: str, wrap_id: str | None) -> None:
        known = self._by_key.get(reply.key)
        if known is None:
            known = reply
            self._by_key[reply.key] = reply
            self.replies.append(reply)
        known.relays.add(relay_url)
        if wrap_id is not None:
            known.wrap_ids.add(wrap_id)

    def _default_after(self) -> int:
        return len(self.replies)

    async def wait_reply(self, after: int | None = None,
                         timeout: float = REPLY_TIMEOUT_S) -> Reply:
        """Reply number ``after`` (0-based; default: the next one from now)."""
        index = self._default_after() if after is None else after
        deadline = time.monotonic() + timeout
        while len(self.replies) <= index:
            if time.monotonic() > deadline:
                last = self.requests[-1].text[:60] if self.requests else "(nothing sent)"
                raise NoReply(f"{self!r}: no reply #{index + 1} within {timeout} s "
                              f"(last request: {last!r})")
            await asyncio.sleep(0.02)
        return self.replies[index]

    async def exactly_one_reply(self, after: int, timeout: float = REPLY_TIMEOUT_S,
                                settle_s: float = SETTLE_S) -> Reply:
        """Reply number ``after``, then no other one within ``settle_s``."""
        reply = await self.wait_reply(after, timeout)
        await asyncio.sleep(settle_s)
        extra = self.replies[after + 1:]
        assert not extra, (f"{self!r}: a second reply where one was due: "
                           f"{[r.text[:80] for r in extra]}")
        return reply

    def replies_to(self, request_id: str) -> list[Reply]:
        """The replies that name ``request_id`` (their ``e`` tag), in arrival order."""
        return [r for r in self.replies if request_id in r.tag_values("e")]

    def unthreaded(self) -> list[Reply]:
        """Replies that name no request (what became of a payment, for instance)."""
        return [r for r in self.replies if not r.tag_values("e")]

    async def reply_to(self, request_id: str, index: int = 0,
                       timeout: float = REPLY_TIMEOUT_S) -> Reply:
        """Reply number ``index`` (0-based) to request ``request_id``."""
        deadline = time.monotonic() + timeout
        while len(self.replies_to(request_id)) <= index:
            if time.monotonic() > deadline:
                sent = [r.text[:60] for r in self.requests if r.id == request_id]
                raise NoReply(f"{self!r}: no reply #{index + 1} to {request_id[:8]} "
                              f"{sent} within {timeout} s; replies so far: "
                              f"{[r.text[:60] for r in self.replies]}")
            await asyncio.sleep(0.02)
        return self.replies_to(request_id)[index]

    async def exactly(self, request_id: str, count: int = 1, timeout: float = REPLY_TIMEOUT_S,
                      settle_s: float = SETTLE_S) -> list[Reply]:
        """The ``count`` replies to ``request_id``, then no other one within ``settle_s``."""
        await self.reply_to(request_id, count - 1, timeout)
        await asyncio.sleep(settle_s)
        replies = self.replies_to(request_id)
        assert len(replies) == count, (f"{self!r}: {len(replies)} replies to "
                                       f"{request_id[:8]} where {count} were due: "
                                       f"{[r.text[:80] for r in replies]}")
        return replies

    async def ask(self, text: str, protocol: Protocol = "nip17",
                  timeout: float = REPLY_TIMEOUT_S) -> Reply:
        """Send and wait for the first reply to it."""
        request_id = await self.send(text, protocol)
        return await self.reply_to(request_id, 0, timeout)

    async def no_reply(self, seconds: float, after: int | None = None) -> None:
        """Fail if a reply beyond ``after`` (default: those already here) arrives in time."""
        index = self._default_after() if after is None else after
        await asyncio.sleep(seconds)
        extra = self.replies[index:]
        assert not extra, f"{self!r}: a reply where none was due: {[r.text[:80] for r in extra]}"

    def assert_clean(self) -> None:
        """No event addressed to us that failed to decrypt or came from someone else."""
        assert not self.undecryptable, f"{self!r}: undecryptable events {self.undecryptable}"
        assert not self.foreign, f"{self!r}: events from someone else {self.foreign}"


class Hub:
    """One nostr-sdk client over some relays, dispatching replies to the askers it watches."""

    def __init__(self, relay_urls: Sequence[str]) -> None:
        self.relay_urls = list(relay_urls)
        self.client = sdk.Client()
        self._askers: dict[str, Asker] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscriptions: list[str] = []
        self.events_seen = 0
        self.errors: list[BaseException] = []

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        for url in self.relay_urls:
            await self.client.add_relay(sdk.RelayUrl.parse(url))
        stream = self.client.notifications()
        self._task = asyncio.create_task(self._read(stream))
        await self.client.connect(timedelta(seconds=CONNECT_TIMEOUT_S))

    async def close(self) -> None:
        """Shut the client down; a dispatch error met meanwhile is raised here."""
        with contextlib.suppress(Exception):
            await self.client.shutdown()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.errors:
            raise RuntimeError(f"the hub failed to dispatch events: {self.errors!r}")

    async def _read(self, stream: sdk.ClientNotificationStream) -> None:
        while True:
            note = await stream.next()
            if note is None or note.is_shutdown():
                return
            try:
                if note.is_new_event():
                    self._dispatch(str(note.relay_url), note.event)
                elif note.is_message():
                    message = note.message.as_enum()
                    if message.is_event_msg():
                        self._dispatch(str(note.relay_url), message.event)
            except Exception as exc:  # kept for close(): a broken hub must fail its test
                self.errors.append(exc)

    def _dispatch(self, relay_url: str, event: sdk.Event) -> None:
        self.events_seen += 1
        for tag in event.tags():
            values = tag.to_vec()
            if len(values) >= 2 and values[0] == "p" and values[1] in self._askers:
                self._askers[values[1]].deliver(relay_url.rstrip("/"), event)

    def asker(self, agent_pubkey: str, keys: sdk.Keys | None = None) -> Asker:
        """A new asker sending through this hub (call :meth:`watch` to receive)."""
        return Asker(self, agent_pubkey, keys)

    async def new_asker(self, agent_pubkey: str) -> Asker:
        asker = self.asker(agent_pubkey)
        await self.watch([asker])
        return asker

    async def new_askers(self, agent_pubkey: str, n: int) -> list[Asker]:
        askers = [self.asker(agent_pubkey) for _ in range(n)]
        await self.watch(askers)
        return askers

    async def watch(self, askers: Iterable[Asker]) -> None:
        """Subscribe to kinds 4 and 1059 addressed to ``askers`` on every relay of this hub."""
        group = list(askers)
        for asker in group:
            self._askers[asker.pubkey] = asker
        flt = (sdk.Filter().pubkeys([a.public_key for a in group])
               .kinds([sdk.Kind(4), sdk.Kind(1059)]))
        out = await self.client.subscribe(sdk.ReqTarget.auto([flt]))
        if not out.success:
            raise RuntimeError(f"subscription refused by every relay: {out.failed}")
        self._subscriptions.append(out.id)
        # stored events come before EOSE; a short pause lets them land before the test goes on
        await asyncio.sleep(0.05)

    async def publish(self, event: sdk.Event) -> set[str]:
        """Send ``event``; at least one relay must accept it. Returns the relays that did."""
        out = await self.client.send_event(event)
        accepted = {str(u).rstrip("/") for u in out.success}
        if not accepted:
            raise RuntimeError(f"no relay accepted {event.id().to_hex()}: {out.failed}")
        return accepted

    async def publish_again(self, event: sdk.Event) -> None:
        """Send an event the relays already have (they may answer ``duplicate:``)."""
        await self.client.send_event(event)

    async def publish_ours(self, event: Event) -> set[str]:
        """Send an event built with our own ``bot.nostr`` code."""
        return await self.publish(sdk.Event.from_json(event.to_json()))


class Malformed:
    """DMs the agent must drop without a reply (SPEC §6), each a validly signed event so the
    relay stores and delivers it: only what is inside is broken. Built with our own
    ``bot.nostr`` code, which can produce layers nostr-sdk refuses to."""

    def __init__(self, sender: Keys, agent_pubkey: str) -> None:
        self.sender = sender
        self.agent = agent_pubkey

    def nip04_garbage(self) -> Event:
        return sign_event(self.sender, 4, "this is not base64?iv=neither is this",
                          [["p", self.agent]])

    def nip04_bad_blocks(self) -> Event:
        return sign_event(self.sender, 4, "AAAA?iv=AAAAAAAAAAAAAAAAAAAAAA==", [["p", self.agent]])

    def nip04_wrong_key(self, agent_keys: Keys) -> Event:
        """Encrypted to another key: checked here to fail with the agent's key."""
        while True:
            content = nip04.encrypt(self.sender.secret_hex, Keys.generate().public_hex,
                                    "a question nobody can read")
            try:
                nip04.decrypt(agent_keys.secret_hex, self.sender.public_hex, content)
            except ValueError:
                return sign_event(self.sender, 4, content, [["p", self.agent]])

    def _wrap_content(self, seal_json: str) -> Event:
        one_time = Keys.generate()
        conv = nip44.conversation_key(one_time.secret_hex, self.agent)
        return sign_event(one_time, 1059, nip44.encrypt(seal_json, conv), [["p", self.agent]])

    def _seal(self, rumor_json: str, signer: Keys | None = None, kind: int = 13) -> Event:
        keys = signer or self.sender
        conv = nip44.conversation_key(keys.secret_hex, self.agent)
        return sign_event(keys, kind, nip44.encrypt(rumor_json, conv), ())

    def _rumor(self, text: str, pubkey: str | None = None, kind: int = 14) -> nip59.Rumor:
        return nip59.Rumor.create(pubkey or self.sender.public_hex, kind, text,
                                  [["p", self.agent]])

    def wrap_garbage(self) -> Event:
        """A gift wrap whose content is not NIP-44 at all."""
        return sign_event(Keys.generate(), 1059, "garbage, not a payload", [["p", self.agent]])

    def wrap_not_an_event(self) -> Event:
        """The wrap decrypts to something that is not a signed event."""
        return self._wrap_content("not json at all")

    def wrap_bad_seal_signature(self) -> Event:
        sealed = self._seal(self._rumor("a forged seal").to_json()).to_dict()
        sealed["sig"] = ("00" if sealed["sig"][:2] != "00" else "11") + sealed["sig"][2:]
        return self._wrap_content(json.dumps(sealed))

    def wrap_seal_wrong_kind(self) -> Event:
        return self._wrap_content(self._seal(self._rumor("kind 1 seal").to_json(),
                                             kind=1).to_json())

    def wrap_seal_rumor_mismatch(self) -> Event:
        """The seal is signed by the sender, the rumor claims to be from someone else."""
        someone = Keys.generate().public_hex
        rumor = self._rumor("I am someone else, pay me", pubkey=someone)
        return self._wrap_content(self._seal(rumor.to_json()).to_json())

    def wrap_rumor_not_json(self) -> Event:
        return self._wrap_content(self._seal("{{{ not json").to_json())

    def wrap_rumor_bad_id(self) -> Event:
        data = self._rumor("a rumor with a wrong id").to_dict()
        data["id"] = "0" * 64
        return self._wrap_content(self._seal(json.dumps(data)).to_json())

    def all(self, agent_keys: Keys) -> dict[str, Event]:
        return {
            "nip04_garbage": self.nip04_garbage(),
            "nip04_bad_blocks": self.nip04_bad_blocks(),
            "nip04_wrong_key": self.nip04_wrong_key(agent_keys),
            "wrap_garbage": self.wrap_garbage(),
            "wrap_not_an_event": self.wrap_not_an_event(),
            "wrap_bad_seal_signature": self.wrap_bad_seal_signature(),
            "wrap_seal_wrong_kind": self.wrap_seal_wrong_kind(),
            "wrap_seal_rumor_mismatch": self.wrap_seal_rumor_mismatch(),
            "wrap_rumor_not_json": self.wrap_rumor_not_json(),
            "wrap_rumor_bad_id": self.wrap_rumor_bad_id(),
        }
