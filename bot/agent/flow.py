"""The job flow: one recorded request → one reply (an answer, a quote, a command's result), and
for a paid job the answer once paid — every path of the seed, resumable from ledger state.

``JobFlow.advance(request_id)`` looks at what is recorded (the request, its job in the ledger)
and takes the next steps; it is the same code for a request just received, a job just paid, and
the start-up sweep after a crash. Every step is idempotent: the ledger's operations are keyed by
the job, the outbox stores a message key once, and what cannot be redone (an invoice shown, an
answer generated) is saved on the request before, or with, the step that depends on it (the
answer with the settlement: ``Intake.settle_answer``). The job id of a question is its request
id.

    question ─ estimate ─ decide ─┬ free / session ─ work ─ answer kept + settled ─ reply (closed)
                                  └ partial / gate ─ invoice ─ attach ─ quote (open)
    paid (wallet, zap, poll) ─ start ─ work ─ answer kept + settled ─ answer (closed)
    work failed / timed out ─ fail (reservation released, payment refunded) ─ told (closed)
    invoice expired ─ told once (closed)
    deleted by its author (NIP-90) ─ unpaid: cancel · paid: fail (refunded) · started: goes on

What is said is a :class:`~bot.agent.replies.Reply`; how it is read and said is the request's
protocol's :class:`~bot.agent.replies.Replier` (a DM, or NIP-90 feedback and results). A request
is advanced by one task at a time (a deletion waits for its target's step to end).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

from bot.agent import commands, texts
from bot.agent.commands import Command
from bot.agent.controls import Controls
from bot.agent.inbox import PROTOCOLS, build_reply
from bot.agent.metrics import Metrics
from bot.agent.outbox import Publisher
from bot.agent.payouts import Payouts, PayoutStatus
from bot.agent.profiles import Profiles
from bot.agent.replies import (
    Ask,
    Deletion,
    DirectReplier,
    EventFetch,
    JobReplier,
    Refusal,
    Replier,
    Reply,
)
from bot.agent.settings import ServiceConfig
from bot.nostr.keys import Keys
from bot.wallets.base import Wallet, WalletError
from bot.wallets.bolt11 import decode_invoice
from bot.work import Backend, Pricing, WorkFailure, WorkRequest, WorkResult, estimate
from bot.work.result import Turn
from storage import (
    Completion,
    Intake,
    JobRecord,
    Ledger,
    LedgerError,
    NotFound,
    Reason,
    RequestOp,
    RequestRecord,
    RequestState,
    UnknownJob,
    whole_sats_up,
)

log = logging.getLogger(__name__)

SYSTEM_PROMPT = "You are Timmy, a helpful assistant. Answer briefly and accurately."


@dataclass(frozen=True, slots=True)
class FlowDeps:
    keys: Keys
    ledger: Ledger
    intake: Intake
    publisher: Publisher
    wallet: Wallet
    backend: Backend
    pricing: Pricing
    service: ServiceConfig
    payouts: Payouts
    profiles: Profiles
    controls: Controls
    admins: frozenset[str]
    max_tokens: int
    fetch_events: EventFetch
    metrics: Metrics = field(default_factory=Metrics)


@dataclass(slots=True)
class _Held:
    lock: asyncio.Lock
    users: int = 0
    replied: bool = False  # a reply moved the request (and gave its lease back) in this step


def _job_log(job_id: str, pubkey: str, step: str, detail: str = "") -> None:
    log.info("job %s %s %s%s", job_id[:8], pubkey[:8], step, f" {detail}" if detail else "")


class JobFlow:
    def __init__(self, deps: FlowDeps, clock: Callable[[], float] = time.time) -> None:
        self.d = deps
        self._clock = clock
        self._generation = asyncio.Semaphore(deps.service.concurrency)
        self._invoicing = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._held: dict[str, _Held] = {}
        direct = DirectReplier(deps.keys)
        self._repliers: dict[str, Replier] = {
            "nip04": direct, "nip17": direct,
            "nip90": JobReplier(deps.keys, deps.service.max_request_bytes, deps.fetch_events,
                                deps.backend.models)}
        self._direct = direct

    # ------------------------------------------------------------------ entry

    async def advance(self, request_id: str) -> None:
        """Take the next steps of a recorded request (see the module docstring), under its
        lease: a request another live replica holds is left to it."""
        async with self._exclusive(request_id):
            self._held[request_id].replied = False
            req = await self.d.intake.request(request_id)
            if req.state in (RequestState.CLOSED, RequestState.DROPPED):
                return
            if not await self._lease(req):
                return
            if req.body is None:  # erased before it was finished: nothing left to do
                await self.d.intake.move_request(req.id, RequestOp.CLOSE)
                return
            reading = await self._replier(req).read(req, req.sender in self.d.admins)
            if isinstance(reading, Ask):
                await self._question(req, reading)
            elif isinstance(reading, Deletion):
                await self._deletion(req, reading)
            elif isinstance(reading, Refusal):
                await self._refuse(req, reading.reason)
            else:
                await self._reply(req, Reply(await self._command(req, reading)))
            await self._unlease(req.id)

    def working(self) -> list[str]:
        """The requests this process is advancing now (their leases are renewed)."""
        return list(self._held)

    async def _lease(self, req: RequestRecord) -> bool:
        """Hold ``req``'s lease: taken when it was recorded here (no write), else taken now."""
        if self.d.intake.holds(req, self.d.intake.replica.lease_s // 2):
            return True
        if await self.d.intake.take_lease(req.id):
            return True
        log.info("request %s is worked by replica %s", req.id[:8], req.lease_owner)
        return False

    async def _unlease(self, request_id: str) -> None:
        """Give the lease back when the request still waits (nothing to do when a reply moved
        its state: that gave it back)."""
        held = self._held.get(request_id)
        if held is not None and held.replied:
            return
        req = await self.d.intake.request(request_id)
        if req.state in (RequestState.NEW, RequestState.OPEN) and self.d.intake.holds(req):
            await self.d.intake.release_lease(request_id)

    async def _refuse(self, req: RequestRecord, reason: str) -> None:
        """A request that cannot be served: one refusal. A job already paid for it (its input
        could be read before, not now) fails and is refunded like any failed work."""
        job = await self._job(req.id)
        if job is not None and str(job.state) in ("paid", "running"):
            failure = await self.d.ledger.fail(job.id, "input no longer readable")
            self.d.metrics.job_finished(str(job.serve), "failed")
            _job_log(job.id, req.sender, "work failed", reason)
            await self._tell_failure(req, await self.d.ledger.job(job.id), reason,
                                     failure.refund_msat)
            return
        if job is not None and str(job.state) in ("quoted", "invoiced"):
            await self.d.ledger.cancel(job.id)
        _job_log(req.id, req.sender, "refused", reason)
        await self._reply(req, Reply(texts.refused(reason), "error"))

    @contextlib.asynccontextmanager
    async def _exclusive(self, request_id: str) -> AsyncIterator[None]:
        held = self._held.setdefault(request_id, _Held(asyncio.Lock()))
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if not held.users:
                del self._held[request_id]

    def _replier(self, req: RequestRecord) -> Replier:
        return self._repliers.get(req.protocol, self._direct)

    # ------------------------------------------------------------------ replies

    async def _reply(self, req: RequestRecord, reply: Reply,
                     op: RequestOp = RequestOp.CLOSE) -> bool:
        """Sign and store (then publish) the reply to ``req``: its first message, or the final
        one after a quote; ``op`` moves the request in the same transaction."""
        key = f"reply:{req.id}" if req.state is RequestState.NEW else f"final:{req.id}"
        replier = self._replier(req)
        said = replace(reply, text=self._money_note(reply.text),
                       note=self._money_note(reply.note) if reply.note else "")
        sent = await self.d.publisher.send(
            key, replier.events(req, said), recipient=req.sender, protocol=req.protocol,
            arrival=replier.relays(req), request_id=req.id, request_op=op,
            all_to_asker=replier.all_to_asker)
        if (held := self._held.get(req.id)) is not None:
            held.replied = True  # moved (and its lease given back) even when stored before
        return sent

    async def _progress(self, req: RequestRecord) -> None:
        """Say the work started, where the protocol says it (NIP-90 ``processing``)."""
        replier = self._replier(req)
        events = replier.progress(req)
        if events:
            await self.d.publisher.send(
                f"processing:{req.id}", events, recipient=req.sender, protocol=req.protocol,
                arrival=replier.relays(req), all_to_asker=replier.all_to_asker)

    def _money_note(self, text: str) -> str:
        """With the dev wallet, every message about money says it is not real money."""
        if not self.d.wallet.is_real_money and "sat" in text:
            return f"{text}\n\n{texts.NOT_REAL_MONEY}"
        return text

    async def notify(self, pubkey: str, key: str, text: str) -> bool:
        """A message that answers no request (what became of a payment), once per ``key``, in
        the protocol and to the relays of the asker's latest request."""
        latest = await self.d.intake.latest_request(pubkey)
        protocol = latest.protocol if latest and latest.protocol in PROTOCOLS else "nip17"
        events = build_reply(self.d.keys, protocol, pubkey, None, self._money_note(text))
        return await self.d.publisher.send(key, events, recipient=pubkey, protocol=protocol,
                                           arrival=latest.relays if latest else ())

    # ------------------------------------------------------------------ questions

    async def _job(self, job_id: str) -> JobRecord | None:
        try:
            return await self.d.ledger.job(job_id)
        except UnknownJob:
            return None

    async def _work_request(self, req: RequestRecord, ask: Ask) -> WorkRequest:
        turns: list[Turn] = []
        if ask.history:
            for question, answer in await self.d.intake.history(
                    req.sender, req.id, self.d.service.history_turns, PROTOCOLS):
                turns += [Turn("user", question), Turn("assistant", answer)]
        max_tokens = min(ask.max_tokens or self.d.max_tokens, self.d.max_tokens)
        return WorkRequest(question=ask.text, max_tokens=max_tokens,
                           timeout_s=float(self.d.service.work_timeout_s),
                           system=SYSTEM_PROMPT, history=tuple(turns),
                           temperature=ask.temperature, model=ask.model)

    async def _question(self, req: RequestRecord, ask: Ask) -> None:
        job = await self._job(req.id)
        work: WorkRequest | None = None  # built once: the quote's prompt is the answer's
        if job is None:
            work = await self._work_request(req, ask)
            quote = await estimate(self.d.backend, work, self.d.pricing)
            if isinstance(quote, WorkFailure):
                _job_log(req.id, req.sender, "refused", quote.kind.value)
                await self._reply(req, Reply(texts.failed(quote.message, 0, None), "error"))
                return
            if ask.bid_msat is not None:
                dry = await self.d.ledger.decide_dry_run(req.sender, quote.amount_msat,
                                                         subsidised=ask.subsidised)
                if await self._over_bid(req, ask.bid_msat, _price(dry.serve.value,
                                                                  dry.work_amount_msat)):
                    return
            decision = await self.d.ledger.decide(req.id, req.sender, quote.amount_msat,
                                                  subsidised=ask.subsidised)
            _job_log(req.id, req.sender, "decided",
                     f"{decision.serve.value} estimate={quote.amount_msat}msat")
            job = await self.d.ledger.job(req.id)
        state = str(job.state)
        price = _price(str(job.serve), job.work_amount_msat)
        if state == "quoted" and ask.bid_msat is not None and price > ask.bid_msat:
            await self.d.ledger.cancel(job.id)  # the pool moved since the dry run: nothing moved
            await self._over_bid(req, ask.bid_msat, price)
        elif state == "quoted":
            await self._quote(req, job, ask.subsidised)
        elif state == "invoiced":
            if req.state is RequestState.NEW and req.invoice:
                await self._send_quote(req, job, req.invoice, ask.subsidised)
        elif state in ("paid", "running"):
            await self._work(req, job, ask, work)
        elif state == "done":
            await self._finish(req, job)
        elif state == "failed":
            await self._reply(req, Reply(texts.failed(job.error or "the job failed",
                                                      job.refund_msat, None), "error"))
        elif state in ("expired", "cancelled"):
            await self._reply(req, Reply(texts.expired(), "error"))

    async def _over_bid(self, req: RequestRecord, bid_msat: int, price_msat: int) -> bool:
        """A price above the asker's bid: one refusal naming the price (True), nothing moved."""
        if price_msat <= bid_msat:
            return False
        _job_log(req.id, req.sender, "refused", f"price {price_msat}msat > bid {bid_msat}msat")
        await self._reply(req, Reply(texts.over_bid(price_msat, bid_msat), "error"))
        return True

    async def _quote(self, req: RequestRecord, job: JobRecord, subsidised: bool) -> None:
        async with self._invoicing:  # caps counted and the invoice attached as one step
            bolt11 = req.invoice
            if bolt11 is None:
                if not await self._may_invoice(req.sender):
                    await self.d.ledger.cancel(job.id)
                    _job_log(job.id, req.sender, "cancelled", "too many open invoices")
                    await self._reply(req, Reply("Too many unpaid quotes right now. Pay one or "
                                                 "wait for them to expire, then ask again.",
                                                 "error"))
                    return
                try:
                    invoice = await self.d.wallet.make_invoice(
                        whole_sats_up(job.work_amount_msat),
                        description=f"Timmy answer {job.id[:8]}",
                        expiry_s=self.d.service.invoice_expiry_s)
                except WalletError as exc:
                    log.warning("job %s: no invoice: %s", job.id[:8], type(exc).__name__)
                    await self.d.ledger.cancel(job.id)
                    await self._reply(req, Reply("Sorry, my wallet is not answering right now. "
                                                 "Nothing was charged; please ask again later.",
                                                 "error"))
                    return
                bolt11 = invoice.bolt11
                await self.d.intake.save_invoice(req.id, bolt11)
            decoded = decode_invoice(bolt11)
            job = await self.d.ledger.attach_invoice(
                job.id, decoded.payment_hash, decoded.amount_msat or 0,
                decoded.created_at + decoded.expiry_s)
        _job_log(job.id, req.sender, "invoiced", f"{decoded.amount_msat}msat")
        await self._send_quote(req, job, bolt11, subsidised)

    async def _send_quote(self, req: RequestRecord, job: JobRecord, bolt11: str,
                          subsidised: bool) -> None:
        decision = await self.d.ledger.decide_dry_run(req.sender, job.estimate_msat,
                                                      subsidised=subsidised)
        paused = self.d.controls.paused
        text = texts.quote(job_decision(job, decision.reason), job.invoice_msat or 0, bolt11,
                           self.d.service.invoice_expiry_s, paused)
        await self._reply(req, Reply(text, "quote", amount_msat=job.invoice_msat or 0,
                                     bolt11=bolt11), RequestOp.WAIT)

    async def _may_invoice(self, pubkey: str) -> bool:
        open_invoices = await self.d.ledger.open_invoices()
        mine = sum(1 for i in open_invoices if i.pubkey == pubkey)
        return (mine < self.d.service.max_open_invoices_per_pubkey
                and len(open_invoices) < self.d.service.max_open_invoices)

    async def _work(self, req: RequestRecord, job: JobRecord, ask: Ask,
                    work: WorkRequest | None = None) -> None:
        if str(job.state) == "paid":
            job = await self.d.ledger.start(job.id)
        if req.answer is None:
            await self._progress(req)
            if work is None:
                work = await self._work_request(req, ask)
            _job_log(job.id, req.sender, "working")
            async with self._generation:
                result = await self._answer(work)
            if isinstance(result, WorkFailure):
                _job_log(job.id, req.sender, "work failed", result.kind.value)
                failure = await self.d.ledger.fail(job.id, f"work {result.kind.value}")
                self.d.metrics.job_finished(str(job.serve), "failed")
                job = await self.d.ledger.job(job.id)
                await self._tell_failure(req, job, result.message, failure.refund_msat)
                return
            computed = self.d.pricing.price_msat(result.prompt_tokens, result.completion_tokens)
            cost = min(computed, job.estimate_msat)
            if computed > cost:
                log.warning("job %s: usage costs %d msat above the quote %d: charging the quote",
                            job.id[:8], computed, job.estimate_msat)
            done = await self.d.intake.settle_answer(req.id, result.text, cost)
            await self._finish(replace(req, answer=result.text, answer_msat=cost), job, done)
            return
        await self._finish(req, job)

    async def _answer(self, work: WorkRequest) -> WorkResult:
        started = time.monotonic()
        result = await self.d.backend.answer(work)
        self.d.metrics.work_seconds.labels(
            "failed" if isinstance(result, WorkFailure) else "ok").observe(
            time.monotonic() - started)
        return result

    async def _finish(self, req: RequestRecord, job: JobRecord,
                      done: Completion | None = None) -> None:
        """Answer a settled job (``done``), or one whose answer was kept: settled now, or its
        settlement read again (a repeat)."""
        if req.answer is None or req.answer_msat is None:  # done, but its text was erased
            await self.d.intake.move_request(req.id, RequestOp.CLOSE)
            return
        if done is None:
            done = await self.d.ledger.settle(job.id, req.answer_msat)
        self.d.metrics.job_finished(str(job.serve), "answered")
        _job_log(job.id, req.sender, "settled",
                 f"cost={done.actual_msat} charged={done.charged_msat} "
                 f"refund={done.refund_msat}")
        footer = texts.answer_footer(str(job.serve), done.actual_msat, done.charged_msat,
                                     done.refund_msat, done.absorbed_msat)
        note = footer
        sending_to = None
        if done.refund_msat:
            sending_to = await self._auto_refund_target(req.sender, done.refund_msat)
            note += "\n" + texts.refund_note(done.refund_msat, sending_to)
        await self._reply(req, Reply(f"{req.answer}\n\n{note}", "answer",
                                     amount_msat=done.charged_msat, output=req.answer, note=note))
        if sending_to:
            self._spawn(self._pay_refund(job.id, req.sender, sending_to))

    async def _tell_failure(self, req: RequestRecord, job: JobRecord, reason: str,
                            refund_msat: int) -> None:
        sending_to = None
        if refund_msat:
            sending_to = await self._auto_refund_target(req.sender, refund_msat)
        await self._reply(req, Reply(texts.failed(reason, refund_msat, sending_to), "error"))
        if sending_to:
            self._spawn(self._pay_refund(job.id, req.sender, sending_to))

    # ------------------------------------------------------------------ cancellation

    async def _deletion(self, req: RequestRecord, deletion: Deletion) -> None:
        """Cancel what the deletion's author asked of us; a deletion by anyone else of a
        request is ignored. The deletion itself is never answered."""
        for target_id in deletion.request_ids:
            try:
                target = await self.d.intake.request(target_id)
            except NotFound:
                continue
            if target.sender != req.sender or target.protocol != req.protocol:
                log.info("deletion %s of %s by another pubkey ignored", req.id[:8],
                         target_id[:8])
                continue
            async with self._exclusive(target.id):
                target = await self.d.intake.request(target.id)
                if target.state in (RequestState.NEW, RequestState.OPEN):
                    if not await self._lease(target):  # worked elsewhere: retried later
                        return
                    await self._cancel(target)
                    await self._unlease(target.id)
        await self.d.intake.move_request(req.id, RequestOp.CLOSE)

    async def _cancel(self, req: RequestRecord) -> None:
        """Unpaid: cancelled, nothing moved; paid, not started: failed, all refunded; started
        (or finished): it goes on."""
        if req.state not in (RequestState.NEW, RequestState.OPEN):
            return
        job = await self._job(req.id)
        state = None if job is None else str(job.state)
        if job is None or state in ("quoted", "invoiced"):
            if job is not None:
                await self.d.ledger.cancel(job.id)
                self.d.metrics.job_finished(str(job.serve), "cancelled")
            _job_log(req.id, req.sender, "cancelled", "by its author")
            await self._reply(req, Reply(texts.cancelled(), "error"))
        elif job is not None and state == "paid":
            failure = await self.d.ledger.fail(job.id, "cancelled by its author")
            self.d.metrics.job_finished(str(job.serve), "cancelled")
            _job_log(req.id, req.sender, "cancelled", f"refund={failure.refund_msat}msat")
            job = await self.d.ledger.job(job.id)
            await self._tell_failure(req, job, "you cancelled the request", failure.refund_msat)

    # ------------------------------------------------------------------ refunds

    async def _auto_refund_target(self, pubkey: str, amount_msat: int) -> str | None:
        if not self.d.service.auto_refund or amount_msat < 1000:
            return None
        return await self.d.profiles.lud16(pubkey)

    async def _pay_refund(self, job_id: str, pubkey: str, address: str) -> None:
        outcome = await self.d.payouts.pay_to_address(job_id, pubkey, address)
        _job_log(job_id, pubkey, "refund", f"{outcome.status.value} {outcome.reason or ''}")

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _claim_refunds(self, req: RequestRecord, bolt11: str | None) -> str:
        refunds = [r for r in await self.d.ledger.pending_refunds(req.sender)
                   if str(r.state) == "pending"]
        if not refunds:
            return "No refund is waiting for you."
        if bolt11 is not None:
            first = refunds[0]
            outcome = await self.d.payouts.pay_to_invoice(first.job_id, req.sender, bolt11,
                                                          whole_sats=True)
            more = (f"\n{len(refunds) - 1} more refund(s) waiting: send another invoice."
                    if len(refunds) > 1 else "")
            return _payout_text(outcome.status, first.amount_msat, outcome.reason) + more
        address = await self.d.profiles.lud16(req.sender)
        lines = []
        for refund in refunds:
            if address and refund.amount_msat >= 1000:
                outcome = await self.d.payouts.pay_to_address(refund.job_id, req.sender, address)
                if outcome.status is not PayoutStatus.REJECTED:
                    lines.append(_payout_text(outcome.status, refund.amount_msat, outcome.reason,
                                              address))
                    continue
            outcome = await self.d.payouts.keep_as_balance(refund.job_id, req.sender)
            lines.append(f"{texts.sats(refund.amount_msat)} added to your balance."
                         if outcome.status is PayoutStatus.PAID
                         else f"Could not claim {texts.sats(refund.amount_msat)}: "
                              f"{outcome.reason}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ commands

    async def _command(self, req: RequestRecord, command: Command) -> str:
        d, pk = self.d, req.sender
        match command:
            case commands.Help():
                return texts.HELP + (f"\n\n{texts.ADMIN_HELP}" if pk in d.admins else "")
            case commands.Invalid(reason=reason):
                return f"{reason}.\nSend `help` for the commands."
            case commands.Estimate(question=question):
                work = await self._work_request(req, Ask(question))
                quote = await estimate(d.backend, work, d.pricing)
                if isinstance(quote, WorkFailure):
                    return f"I could not price that: {quote.message}."
                decision = await d.ledger.decide_dry_run(pk, quote.amount_msat)
                return texts.estimate(decision, d.controls.paused)
            case commands.Balance():
                return texts.balance(await d.ledger.balance(pk), await d.ledger.allowance(pk),
                                     await d.ledger.pending_refunds(pk))
            case commands.Topup(sats=sats):
                return await self._topup(req, sats)
            case commands.Refund(bolt11=bolt11):
                return await self._claim_refunds(req, bolt11)
            case commands.Pool():
                return texts.pool(await d.ledger.pool_status(), d.controls.paused)
            case commands.Status():
                return texts.status(await d.ledger.recent_jobs(pk, 5))
            case commands.AdminStatus(what="limits"):
                return texts.limits(d.controls.limits, d.controls.paused)
            case commands.AdminStatus():
                return texts.pool(await d.ledger.pool_status(), d.controls.paused)
            case commands.AdminPause(paused=paused):
                await d.controls.set_paused(paused)
                return "Free answers paused." if paused else "Free answers resumed."
            case commands.AdminLimit(key=key, value=value):
                try:
                    await d.controls.set_limit(key, value)
                except (LedgerError, ValueError) as exc:
                    return f"Not changed: {exc}"
                return texts.limits(d.controls.limits, d.controls.paused)
            case commands.AdminCredit(sats=sats):
                credit = await d.ledger.credit_pool(sats * 1000, f"admin:{req.id}",
                                                    source="operator")
                status = await d.ledger.pool_status()
                return (f"Pool credited {texts.sats(credit.amount_msat)}; it now holds "
                        f"{texts.sats(status.available_msat)}.")
        return "Send `help` for the commands."

    async def _topup(self, req: RequestRecord, sats: int) -> str:
        async with self._invoicing:
            bolt11 = req.invoice
            if bolt11 is None:
                if not await self._may_invoice(req.sender):
                    return ("Too many unpaid invoices right now. Pay one or wait for them to "
                            "expire.")
                try:
                    invoice = await self.d.wallet.make_invoice(
                        sats * 1000, description=f"Timmy top-up {req.sender[:8]}",
                        expiry_s=self.d.service.invoice_expiry_s)
                except WalletError as exc:
                    log.warning("top-up for %s: no invoice: %s", req.sender[:8],
                                type(exc).__name__)
                    return "Sorry, my wallet is not answering right now. Please try again later."
                bolt11 = invoice.bolt11
                await self.d.intake.save_invoice(req.id, bolt11)
            decoded = decode_invoice(bolt11)
            await self.d.ledger.record_topup(req.sender, decoded.payment_hash, sats * 1000,
                                             decoded.created_at + decoded.expiry_s)
        return texts.topup(sats, bolt11, self.d.service.invoice_expiry_s)

    # ------------------------------------------------------------------ stop

    async def drain(self, timeout_s: float) -> None:
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout_s)


def _price(serve: str, work_amount_msat: int) -> int:
    """What the asker pays for a decision: nothing when free, the balance's share for a
    session, the invoice (whole sats) for partial and gate."""
    if serve == "free":
        return 0
    if serve == "session":
        return work_amount_msat
    return whole_sats_up(work_amount_msat)


def job_decision(job: JobRecord, reason: Reason) -> texts.QuoteTerms:
    return texts.QuoteTerms(job.estimate_msat, job.absorb_msat, reason)


def _payout_text(status: PayoutStatus, amount_msat: int, reason: str | None,
                 to: str | None = None) -> str:
    where = f" to {to}" if to else ""
    if status is PayoutStatus.PAID:
        return f"Refund of {texts.sats(amount_msat)} paid{where}."
    if status is PayoutStatus.IN_FLIGHT:
        return f"Refund of {texts.sats(amount_msat)} is on its way{where}."
    if status is PayoutStatus.FAILED:
        return (f"The refund payment failed ({reason}). It is still yours: send "
                f"`refund <invoice>` to try again.")
    return f"Refund not sent: {reason}."

