"""NIP-90 data vending for text generation (kind 5050): requests read, feedback and results
built. Pure: no I/O, no clock (the caller passes ``now`` where time matters).

``parse_request(keys, event)`` reads a verified kind-5050 event into a :class:`JobRequest` (or
raises :class:`JobRequestError` naming what is wrong). An ``encrypted`` request carries its
``i`` and ``param`` tags as a JSON list in ``content``, encrypted to the provider (the ``p``
tag): NIP-04 as NIP-90 says, and NIP-44 (nostr-protocol/nips#1407 moves NIP-90 encryption
there) — the payload's shape tells them apart (NIP-04 has ``?iv=``). The decrypted list is
outside JSON and goes through :func:`bot.untrusted.load_json`.

``feedback`` builds kind 7000 (``status``, ``amount`` with an optional bolt11, ``e``, ``p``);
``result`` builds kind 6050 (``request``, ``e``, ``p``, ``i`` unless encrypted, ``amount``).
An encrypted request is answered in its own scheme: the result's content and the feedback's
human text are encrypted to the customer, an ``encrypted`` tag marks them, and no input appears
in clear. ``deleted_ids`` reads the event ids a kind-5 deletion names. ``job_output`` picks,
among result events, the output of an earlier job a ``job`` input names (chaining).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from bot.nostr import nip04, nip44
from bot.nostr.errors import DecryptionError, MalformedEvent
from bot.nostr.event import Event, parse_tags, sign_event
from bot.nostr.hexutil import is_hex
from bot.nostr.keys import Keys
from bot.untrusted import load_json

KIND_TEXT_JOB: Final = 5050
KIND_TEXT_RESULT: Final = 6050
KIND_FEEDBACK: Final = 7000
KIND_DELETION: Final = 5
JOB_REQUEST_KINDS: Final = range(5000, 6000)
RESULT_OFFSET: Final = 1000
"""A job's result kind is its request kind + 1000."""
MAX_PROVIDERS: Final = 16
"""Providers of an earlier job whose results a ``job`` input may use (its first ``p`` tags)."""

INPUT_TYPES: Final = ("text", "event", "url", "job")
MAX_INPUTS: Final = 8
MAX_PARAMS: Final = 16
MAX_PARAM_CHARS: Final = 256
MAX_RELAYS: Final = 8
MAX_ENCRYPTED_CHARS: Final = 64_000
MAX_BID_DIGITS: Final = 18

Encryption = Literal["", "nip04", "nip44"]
Status = Literal["payment-required", "processing", "error", "success", "partial"]


class JobRequestError(MalformedEvent):
    """A job request that cannot be served as sent (the message says why, for an ``error``)."""


@dataclass(frozen=True, slots=True)
class JobInput:
    data: str
    type: str
    relay: str
    marker: str


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One kind-5050 request. ``event`` is the request as received (its JSON goes in the
    result's ``request`` tag); ``encryption`` is ``""`` for a clear request."""

    event: Event
    inputs: tuple[JobInput, ...]
    params: tuple[tuple[str, str], ...]
    bid_msat: int | None
    relays: tuple[str, ...]
    targets: tuple[str, ...]
    encryption: Encryption

    @property
    def id(self) -> str:
        return self.event.id

    @property
    def customer(self) -> str:
        return self.event.pubkey

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


def scheme_of(payload: str) -> Encryption:
    """Which NIP encrypted ``payload``: NIP-04 carries ``?iv=``, NIP-44 is one base64 blob."""
    return "nip04" if "?iv=" in payload else "nip44"


def encrypt(keys: Keys, scheme: Encryption, pubkey: str, text: str) -> str:
    if scheme == "nip04":
        return nip04.encrypt(keys.secret_hex, pubkey, text)
    if scheme == "nip44":
        return nip44.encrypt(text, keys.conversation_key(pubkey))
    raise MalformedEvent("no encryption scheme to encrypt with")


def decrypt(keys: Keys, scheme: Encryption, pubkey: str, payload: str) -> str:
    if scheme == "nip04":
        return nip04.decrypt(keys.secret_hex, pubkey, payload)
    if scheme == "nip44":
        return nip44.decrypt(payload, keys.conversation_key(pubkey))
    raise MalformedEvent("no encryption scheme to decrypt with")


def parse_request(keys: Keys, event: Event) -> JobRequest:
    """Read a verified kind-5050 event addressed to ``keys`` (or to nobody); raise
    :class:`JobRequestError` for anything malformed."""
    if event.kind != KIND_TEXT_JOB:
        raise JobRequestError(f"kind {event.kind} is not a text-generation job request")
    targets = tuple(event.tag_values("p"))
    if not all(is_hex(p, 64) for p in targets):
        raise JobRequestError("a p tag is not a public key")
    encrypted = any(t and t[0] == "encrypted" for t in event.tags)
    tags: Sequence[tuple[str, ...]] = event.tags
    scheme: Encryption = ""
    if encrypted:
        if keys.public_hex not in targets:
            raise JobRequestError("an encrypted request must tag its provider with p")
        if len(event.content) > MAX_ENCRYPTED_CHARS:
            raise JobRequestError("encrypted content too large")
        scheme = scheme_of(event.content)
        try:
            plain = decrypt(keys, scheme, event.pubkey, event.content)
        except DecryptionError as exc:
            raise JobRequestError(f"encrypted content does not decrypt ({scheme})") from exc
        try:
            hidden = parse_tags(load_json(plain, max_chars=MAX_ENCRYPTED_CHARS,
                                          error=JobRequestError, what="encrypted params"))
        except MalformedEvent as exc:
            raise JobRequestError(f"encrypted params are not tags: {exc}") from exc
        tags = [t for t in event.tags if t and t[0] not in ("i", "param")] + list(hidden)
    inputs: list[JobInput] = []
    params: list[tuple[str, str]] = []
    bid: int | None = None
    relays: list[str] = []
    for tag in tags:
        if not tag:
            continue
        name = tag[0]
        if name == "i":
            if len(tag) < 2:
                raise JobRequestError("an i tag has no data")
            kind = tag[2] if len(tag) > 2 and tag[2] else "text"
            if kind not in INPUT_TYPES:
                raise JobRequestError(f"input type {kind[:20]!r} is not one of "
                                      f"{', '.join(INPUT_TYPES)}")
            if kind in ("event", "job") and not is_hex(tag[1], 64):
                raise JobRequestError(f"the {kind} input is not an event id")
            inputs.append(JobInput(tag[1], kind, tag[3] if len(tag) > 3 else "",
                                   tag[4] if len(tag) > 4 else ""))
        elif name == "param":
            if len(tag) < 3 or not tag[1] or len(tag[1]) + len(tag[2]) > MAX_PARAM_CHARS:
                raise JobRequestError("a param tag needs a short name and value")
            params.append((tag[1], tag[2]))
        elif name == "bid":
            if (len(tag) < 2 or not tag[1].isascii() or not tag[1].isdigit()
                    or len(tag[1]) > MAX_BID_DIGITS):  # "²".isdigit() is True; int() refuses it
                raise JobRequestError("bid must be a whole number of millisats")
            bid = int(tag[1])
        elif name == "relays":
            relays += [u for u in tag[1:] if u.startswith(("wss://", "ws://")) and len(u) < 256]
    if not inputs:
        raise JobRequestError("the request has no i input")
    if len(inputs) > MAX_INPUTS or len(params) > MAX_PARAMS:
        raise JobRequestError("too many inputs or params")
    return JobRequest(event, tuple(inputs), tuple(params), bid,
                      tuple(dict.fromkeys(relays))[:MAX_RELAYS], targets, scheme)


def _refs(request: JobRequest | Event, relay_hint: str) -> list[list[str]]:
    event = request.event if isinstance(request, JobRequest) else request
    return [["e", event.id, relay_hint], ["p", event.pubkey]]


def feedback(keys: Keys, request: JobRequest | Event, status: Status, info: str = "", *,
             amount_msat: int | None = None, bolt11: str | None = None,
             relay_hint: str = "") -> Event:
    """Kind-7000 feedback on ``request`` (a bare event: a request that could not be read, to
    which an ``error`` is said in clear). ``info`` is the human text: in the ``status`` tag, or
    encrypted in ``content`` for an encrypted request."""
    scheme = request.encryption if isinstance(request, JobRequest) else ""
    tags: list[list[str]] = [["status", status]]
    content = ""
    if info and scheme:
        content = encrypt(keys, scheme, request.pubkey if isinstance(request, Event)
                          else request.customer, info)
    elif info:
        tags[0].append(info)
    if amount_msat is not None:
        tags.append(["amount", str(amount_msat)] + ([bolt11] if bolt11 else []))
    tags += _refs(request, relay_hint)
    if scheme:
        tags.append(["encrypted"])
    return sign_event(keys, KIND_FEEDBACK, content, tags)


def result(keys: Keys, request: JobRequest, output: str, *, amount_msat: int,
           relay_hint: str = "") -> Event:
    """Kind-6050 result of ``request``: ``output`` in content (encrypted in the request's
    scheme for an encrypted request, whose inputs are then not repeated in clear)."""
    tags: list[list[str]] = [["request", request.event.to_json()], *_refs(request, relay_hint)]
    content = output
    if request.encryption:
        content = encrypt(keys, request.encryption, request.customer, output)
        tags.append(["encrypted"])
    else:
        tags += [["i", i.data, i.type] + ([i.relay] if i.relay else []) for i in request.inputs]
    tags.append(["amount", str(amount_msat)])
    return sign_event(keys, KIND_TEXT_RESULT, content, tags)


def deleted_ids(event: Event) -> tuple[str, ...]:
    """The event ids a kind-5 deletion request names (its ``e`` tags)."""
    if event.kind != KIND_DELETION:
        raise MalformedEvent(f"kind {event.kind} is not a deletion")
    return tuple(dict.fromkeys(e for e in event.tag_values("e") if is_hex(e, 64)))


def providers_of(request: Event) -> tuple[str, ...]:
    """The providers a job request tagged (``p``), at most :data:`MAX_PROVIDERS`."""
    return tuple(dict.fromkeys(p for p in request.tag_values("p") if is_hex(p, 64)))[
        :MAX_PROVIDERS]


def job_output(request: Event, results: Sequence[Event]) -> str | None:
    """The output of the job ``request`` among ``results``: a result of its kind that names it
    (``e``), by a provider it tagged (anyone may publish a "result": only those the customer
    asked count), in clear (an encrypted result is for its customer alone), not empty; the
    earliest such one. ``None`` when there is none."""
    if request.kind not in JOB_REQUEST_KINDS:
        return None
    providers = set(providers_of(request))
    usable = [r for r in results
              if r.kind == request.kind + RESULT_OFFSET and r.pubkey in providers
              and request.id in r.tag_values("e") and r.content.strip()
              and not any(t and t[0] == "encrypted" for t in r.tags)]
    if not usable:
        return None
    return min(usable, key=lambda r: (r.created_at, r.id)).content
