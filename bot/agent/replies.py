"""How to read and answer one recorded request, per protocol (the job flow's only
protocol-specific part).

The flow says *what* to tell the asker as a :class:`Reply` (its DM text, and what a quote or an
answer carries: amount, bolt11, the answer alone); a :class:`Replier` chosen by the request's
protocol reads the request and turns each reply into signed events:

- :class:`DirectReplier` (``nip04``, ``nip17``): the body is the DM text, parsed as a command;
  every reply is one DM (``inbox.build_reply``).
- :class:`JobReplier` (``nip90``): the body is the kind-5050 request (or a kind-5 deletion) as
  received; it is read with ``bot.nostr.nip90`` into an :class:`Ask` (the text, the bid, the
  ``max_tokens``, ``temperature`` (0 to 2) and ``model`` params — a model only among the
  backend's ``models``, which the operator lists in ``[ai] models``), a :class:`Deletion`, or a
  :class:`Refusal` (a malformed request, a model not offered: one ``error`` feedback). An
  ``event`` input is the content of that event, fetched from the agent's relays
  (``EventFetch``; a bounded wait, so an unknown id is a refusal, not a stall). A ``job`` input
  (chaining) is the output of that earlier job: its request is fetched by id, then its results
  (kind + 1000, ``#e`` the request, by the providers it tagged) and ``nip90.job_output`` picks
  the earliest clear one; no such result yet, or only encrypted ones, is a refusal. ``url``
  inputs are refused: fetching whatever a stranger names would make the agent a proxy into
  private networks and a download amplifier. Replies are kind-7000 feedback
  (``payment-required`` with amount and bolt11, ``error`` with the reason, ``processing``)
  and, for an answer, the kind-6050 result with what was charged then ``success`` — encrypted
  in the request's scheme when it was. They go to the request's ``relays`` too, besides the
  arrival relays.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from bot.agent import commands
from bot.agent.commands import Command
from bot.agent.inbox import build_reply
from bot.nostr import nip90
from bot.nostr.errors import NostrError
from bot.nostr.event import Event
from bot.nostr.keys import Keys
from bot.work.result import MAX_TEMPERATURE
from storage import RequestRecord

MAX_INFO_CHARS: Final = 1000
"""Longest human text in a feedback's status tag (the rest is cut)."""

MAX_READ_CACHED: Final = 4096
"""Job requests kept read (parsed, decrypted) by ``JobReplier``."""

TEMPERATURE_RE: Final = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,6})?|\.[0-9]{1,6}")
"""A temperature param: plain decimal digits (no sign, exponent, inf or nan)."""

EventFetch = Callable[[list[dict[str, object]]], Awaitable[list[Event]]]
"""Query the agent's relays: the verified events matching the filters that came in time."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One message to the asker. ``text`` is the whole message as a DM says it; a ``quote``
    carries ``amount_msat`` and ``bolt11``; an ``answer`` carries ``output`` (the answer alone),
    ``note`` (what it cost) and ``amount_msat`` (what was charged)."""

    text: str
    kind: Literal["info", "error", "quote", "answer"] = "info"
    amount_msat: int | None = None
    bolt11: str | None = None
    output: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Ask:
    """A question to answer. ``bid_msat``: the most the asker will pay (None: no limit);
    ``max_tokens``: the asker's own cap (None: the operator's); ``history``: whether the asker's
    earlier exchanges are context (a DM conversation; never for a job request); ``subsidised``:
    whether the pool may pay (not for a job request that tags no provider); ``temperature``,
    ``model``: the asker's choice (None: the backend's)."""

    text: str
    bid_msat: int | None = None
    max_tokens: int | None = None
    history: bool = True
    subsidised: bool = True
    temperature: float | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Deletion:
    """A kind-5 deletion by the request's sender of the requests it names."""

    request_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request that cannot be served as sent (``reason`` says why, in one ``error``)."""

    reason: str


Reading = Ask | Deletion | Refusal | Command


class Replier(Protocol):
    async def read(self, req: RequestRecord, is_admin: bool) -> Reading: ...

    def events(self, req: RequestRecord, reply: Reply) -> list[Event]: ...

    def progress(self, req: RequestRecord) -> list[Event]:
        """What says the work has started (nothing for a DM)."""
        ...

    def relays(self, req: RequestRecord) -> tuple[str, ...]:
        """Where, besides the agent's write relays, the replies go."""
        ...

    @property
    def all_to_asker(self) -> bool:
        """Whether every event of a reply is for the asker (else the first; a NIP-17 self
        copy follows it)."""
        ...


class DirectReplier:
    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    async def read(self, req: RequestRecord, is_admin: bool) -> Reading:
        command = commands.parse(req.body or "", is_admin)
        return Ask(command.text) if isinstance(command, commands.Question) else command

    def events(self, req: RequestRecord, reply: Reply) -> list[Event]:
        return build_reply(self.keys, req.protocol, req.sender, req.reply_to, reply.text)

    def progress(self, req: RequestRecord) -> list[Event]:
        return []

    def relays(self, req: RequestRecord) -> tuple[str, ...]:
        return req.relays

    @property
    def all_to_asker(self) -> bool:
        return False


class JobReplier:
    def __init__(self, keys: Keys, max_text_bytes: int, fetch: EventFetch,
                 models: tuple[str, ...]) -> None:
        self.keys = keys
        self.max_text_bytes = max_text_bytes
        self.fetch = fetch
        self.models = models
        self._read: OrderedDict[str, nip90.JobRequest | Event] = OrderedDict()

    def _event(self, req: RequestRecord) -> Event:
        return Event.from_json(req.body or "")

    def _request(self, req: RequestRecord) -> nip90.JobRequest | Event:
        """The request as read, or the bare event when it cannot be read (an error reply);
        the last :data:`MAX_READ_CACHED` are kept (a job's replies read it several times)."""
        known = self._read.get(req.id)
        if known is not None:
            self._read.move_to_end(req.id)
            return known
        event = self._event(req)
        try:
            read: nip90.JobRequest | Event = nip90.parse_request(self.keys, event)
        except NostrError:
            read = event
        return self._keep(req.id, read)

    def _keep(self, request_id: str, read: nip90.JobRequest | Event
              ) -> nip90.JobRequest | Event:
        self._read[request_id] = read
        if len(self._read) > MAX_READ_CACHED:
            self._read.popitem(last=False)
        return read

    async def read(self, req: RequestRecord, is_admin: bool) -> Reading:
        try:
            event = self._event(req)
            if event.kind == nip90.KIND_DELETION:
                return Deletion(nip90.deleted_ids(event))
            job = nip90.parse_request(self.keys, event)
        except NostrError as exc:
            return Refusal(str(exc))
        self._keep(req.id, job)
        texts = []
        for item in job.inputs:
            if item.type == "event":
                found = await self._by_id(item.data)
                if found is None:
                    return Refusal(f"event {item.data[:16]}… was not found on my relays")
                texts.append(found.content)
            elif item.type == "job":
                output = await self._job_output(item.data)
                if isinstance(output, Refusal):
                    return output
                texts.append(output)
            elif item.type == "text":
                texts.append(item.data)
            else:
                return Refusal(f"input type {item.type} is not served here: send the text "
                               f"itself")
        text = "\n\n".join(texts).strip()
        if not text:
            return Refusal("the input is empty")
        if len(text.encode("utf-8", "surrogatepass")) > self.max_text_bytes:
            return Refusal(f"the input is longer than {self.max_text_bytes} bytes")
        max_tokens = job.param("max_tokens")
        cap = int(max_tokens) if (max_tokens and max_tokens.isascii() and max_tokens.isdigit()
                                  and len(max_tokens) < 7) else None  # "²".isdigit() is True
        if max_tokens is not None and not cap:
            return Refusal("param max_tokens must be a positive whole number")
        temperature = job.param("temperature")
        if temperature is not None and (not TEMPERATURE_RE.fullmatch(temperature)
                                        or float(temperature) > MAX_TEMPERATURE):
            return Refusal(f"param temperature must be a number from 0 to {MAX_TEMPERATURE:g}")
        model = job.param("model")
        if model is not None and model not in self.models:
            return Refusal(f"model {model[:40]!r} is not offered here; offered: "
                           f"{', '.join(self.models)}")
        return Ask(text, bid_msat=job.bid_msat, max_tokens=cap, history=False,
                   subsidised=self.keys.public_hex in job.targets,
                   temperature=None if temperature is None else float(temperature),
                   model=model)

    async def _by_id(self, event_id: str) -> Event | None:
        found = await self.fetch([{"ids": [event_id], "limit": 1}])
        return next((e for e in found if e.id == event_id), None)

    async def _job_output(self, job_id: str) -> str | Refusal:
        """The output of the earlier job ``job_id`` (a ``job`` input)."""
        request = await self._by_id(job_id)
        if request is None:
            return Refusal(f"job {job_id[:16]}… was not found on my relays")
        if request.kind not in nip90.JOB_REQUEST_KINDS:
            return Refusal(f"event {job_id[:16]}… is not a job request")
        providers = nip90.providers_of(request)
        if not providers:
            return Refusal(f"job {job_id[:16]}… tagged no provider: whose result to use is "
                           f"unclear")
        results = await self.fetch([{"kinds": [request.kind + nip90.RESULT_OFFSET],
                                     "#e": [job_id], "authors": list(providers)}])
        output = nip90.job_output(request, results)
        if output is None:
            return Refusal(f"job {job_id[:16]}… has no result in clear on my relays yet")
        return output

    def events(self, req: RequestRecord, reply: Reply) -> list[Event]:
        job = self._request(req)
        if reply.kind == "answer" and isinstance(job, nip90.JobRequest):
            return [nip90.result(self.keys, job, reply.output or "",
                                 amount_msat=reply.amount_msat or 0),
                    self._feedback(job, "success", reply.note)]
        if reply.kind == "quote":
            info = " ".join(line for line in reply.text.splitlines()
                            if line and line != reply.bolt11)
            return [self._feedback(job, "payment-required", info, amount_msat=reply.amount_msat,
                                   bolt11=reply.bolt11)]
        return [self._feedback(job, "error", reply.text.replace("\n", " "))]

    def _feedback(self, job: nip90.JobRequest | Event, status: nip90.Status, info: str, *,
                  amount_msat: int | None = None, bolt11: str | None = None) -> Event:
        return nip90.feedback(self.keys, job, status, info[:MAX_INFO_CHARS],
                              amount_msat=amount_msat, bolt11=bolt11)

    def progress(self, req: RequestRecord) -> list[Event]:
        return [self._feedback(self._request(req), "processing", "")]

    def relays(self, req: RequestRecord) -> tuple[str, ...]:
        job = self._request(req)
        extra = job.relays if isinstance(job, nip90.JobRequest) else ()
        return tuple(dict.fromkeys(req.relays + extra))

    @property
    def all_to_asker(self) -> bool:
        return True
