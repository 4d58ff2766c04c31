"""The running agent: every service wired to one ledger, one relay pool and one wallet.

``Agent.start()`` opens the services, runs the start-up sweep (every request recorded but not
finished, every paid or running job, every pending outbox event, every unfinished payout, every
payment counted in the last 7 days whose payer's notice was never stored) and subscribes;
``Agent.stop()`` stops taking requests, lets running work finish within ``stop_grace_s`` (what
is left stays recorded for the next start), flushes the outbox and closes the relays.
Background loops: the outbox's retries, wallet settlements (pushed, and polled over the open
invoices, which also expires them), a reconcile of open requests whose job moved (paid by a zap
or a poll, expired), and the erasure of old questions and answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

from bot.agent.controls import Controls
from bot.agent.flow import FlowDeps, JobFlow
from bot.agent.guard import Guard
from bot.agent.inbox import Inbox
from bot.agent.jobs import JobInbox
from bot.agent.metrics import Metrics
from bot.agent.outbox import Publisher
from bot.agent.payouts import Payouts
from bot.agent.profiles import Profiles, job_handler, own_profile
from bot.agent.queue import FairQueue
from bot.agent.routing import RelayLists
from bot.agent.settings import ProfileConfig, ServiceConfig
from bot.agent.settlements import Applied, SettlementProcessor, notice_key, payer_message
from bot.agent.zaps import ZapIntake, ZapResult
from bot.nostr.event import Event
from bot.nostr.keys import Keys
from bot.relays.config import RelayConfig
from bot.relays.pool import RelayPool
from bot.relays.tasks import cancel_all
from bot.wallets.base import SettlementSource, Wallet
from bot.wallets.config import PayoutPolicy
from bot.wallets.lightning_address import AgentAddress
from bot.wallets.lnurl import LnurlClient
from bot.work import Backend, Pricing
from storage import (
    Database,
    Intake,
    Ledger,
    Limits,
    Outbox,
    PaymentOutcome,
    PaymentVerdict,
    Replica,
    RequestRecord,
    RequestState,
    StorageFailure,
    UnknownJob,
)

log = logging.getLogger(__name__)

RECONCILE_S = 10.0
PAYOUTS_EVERY_S = 60.0
ERASE_EVERY_S = 3600.0
ANNOUNCE_EVERY_S = 6 * 3600.0
NOTICE_SWEEP_S = 7 * 86_400
"""At start, payments counted this far back whose notice was never stored are told."""
NOTICE_SWEEP_EVERY_S = 60.0
"""Then, this often, the payments counted since the last sweep."""
FETCH_EVENT_S = 5.0


async def restarting(run: Callable[[], Awaitable[None]], name: str, *,
                     first_delay_s: float = 1.0, max_delay_s: float = 60.0) -> None:
    """Run one of the agent's background loops until it returns; when it fails (a database or
    relay error it did not handle), log it and run it again after a backoff, so a transient
    fault never leaves the agent without its outbox, settlements or sweeps."""
    delay = first_delay_s
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("agent: %s loop failed; restarting in %.0f s", name, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay_s)


def queue_workers(concurrency: int) -> int:
    """Requests advanced at once. A job spends most of its time waiting (its ledger writes,
    the model's count and answer), and only the answer is bounded (by ``concurrency``): more
    requests in progress share group commits and keep the model busy, so a burst is not
    served in rounds. Measured with 100 askers at once and ``concurrency`` 8: the median wait
    in the queue fell from 230–240 ms with 16 workers to 10–11 ms with 48, DM to reply 8–10 %
    sooner (`bench/agent.py`)."""
    return max(32, 6 * concurrency)


@dataclass(frozen=True, slots=True)
class AgentParts:
    """What the agent is made of (built from the settings by ``bot.agent.run``)."""

    keys: Keys
    relays: Sequence[RelayConfig]
    db: Database
    wallet: Wallet
    backend: Backend
    http: httpx.AsyncClient
    pricing: Pricing
    limits: Limits
    service: ServiceConfig
    profile: ProfileConfig
    admins: frozenset[str]
    max_tokens: int
    payout_policy: PayoutPolicy
    lnurl_insecure_hosts: frozenset[str] = frozenset()


class Agent:
    def __init__(self, parts: AgentParts, clock: Callable[[], float] = time.time) -> None:
        self.parts = p = parts
        self._clock = clock
        self.metrics = Metrics()
        self.replica = Replica(p.service.lease_s)
        self.intake = Intake(p.db, replica=self.replica)
        self.ledger = Ledger(p.db, p.limits)
        self.outbox = Outbox(p.db, replica=self.replica)
        self.controls = Controls(self.ledger, self.intake, p.limits)
        self.pool = RelayPool(p.relays, keys=p.keys, store=self.intake, http_client=p.http)
        self.metrics.watch_relays(self.pool.status)
        self.lists = RelayLists(self.pool)
        self.profiles = Profiles(self.pool)
        self.publisher = Publisher(self.outbox, self.pool, self.lists)
        self.lnurl = LnurlClient(p.http, insecure_hosts=p.lnurl_insecure_hosts)
        self.payouts = Payouts(self.ledger, p.wallet, lnurl=self.lnurl, policy=p.payout_policy,
                               metrics=self.metrics, replica=self.replica)
        self.flow = JobFlow(FlowDeps(
            keys=p.keys, ledger=self.ledger, intake=self.intake, publisher=self.publisher,
            wallet=p.wallet, backend=p.backend, pricing=p.pricing, service=p.service,
            payouts=self.payouts, profiles=self.profiles, controls=self.controls,
            admins=p.admins, max_tokens=p.max_tokens, fetch_events=self._fetch_events,
            metrics=self.metrics))
        self.queue: FairQueue[str] = FairQueue(self.flow.advance,
                                               workers=queue_workers(p.service.concurrency))
        self.guard = Guard(p.service, metrics=self.metrics)
        self.inbox = Inbox(self.pool, p.keys, self.intake, self.guard, self._on_request,
                           metrics=self.metrics)
        self.jobs = JobInbox(self.pool, p.keys, self.intake, self.guard, self._on_request,
                             max_age_s=p.service.nip90_max_age_s,
                             untargeted=p.service.nip90_untargeted, clock=clock)
        self.settlements = SettlementProcessor(self.ledger, on_credit=self._on_credit,
                                               expiry_grace_s=p.service.expiry_grace_s)
        self.zaps: ZapIntake | None = None
        self._notices_through = 0  # the last balance transfer the notice sweep has told
        self._tasks: list[asyncio.Task[None]] = []
        self.started = asyncio.Event()

    # ------------------------------------------------------------------ intake

    def _on_request(self, record: RequestRecord) -> None:
        self.metrics.requests_in.labels(record.protocol).inc()
        self.queue.submit(record.sender, record.id)

    async def _on_credit(self, applied: Applied) -> None:
        """A payment counted (by a settlement or a zap; a repeat too): a paid job goes on, the
        payer is told what became of the money."""
        outcome = applied.outcome
        if isinstance(outcome, PaymentOutcome) and (
                outcome.job_paid or outcome.result is PaymentVerdict.TERMS_CHANGED):
            # the job flow says what happens next
            log.info("job %s %s paid (%s)", outcome.job_id[:8], applied.pubkey[:8],
                     outcome.result.value)
            self.queue.submit(applied.pubkey, outcome.job_id)
        await self._tell_payer(applied)

    async def _tell_payer(self, applied: Applied) -> None:
        """Store (then publish) the payer's notice once per payment hash: the outbox key is the
        only record that it was told, so a repeat, or the start-up sweep after a crash, stores
        it when it is missing and never a second time."""
        outcome = applied.outcome
        if isinstance(outcome, PaymentOutcome) and outcome.result is PaymentVerdict.TERMS_CHANGED:
            return  # the job flow tells it, with the refund
        text = payer_message(applied)
        key = notice_key(applied.payment_hash)
        if text and not await self.outbox.has(key):
            await self.flow.notify(applied.pubkey, key, text)

    async def sweep_notices(self) -> None:
        """Payers whose payment was counted but whose notice was never stored (the process
        died in between, or storing it failed) are told now: the first sweep reads the last
        ``NOTICE_SWEEP_S``, each later one only the payments counted after what it saw."""
        since = int(self._clock()) - NOTICE_SWEEP_S
        for transfer_id, applied in await self.settlements.credited_since(
                since, self._notices_through):
            await self._tell_payer(applied)
            self._notices_through = max(self._notices_through, transfer_id)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        p = self.parts
        log.info("replica %s (leases of %d s)", self.replica.id, self.replica.lease_s)
        await self.controls.load()
        for owner in await self.intake.free_dead_leases():
            log.info("freed the leases of %s (no longer running)", owner)
        await self.pool.start()
        self.queue.start()
        await self._reconcile_requests()  # the start-up sweep
        self._loop(self.sweep_notices, "notice sweep")
        self._loop(functools.partial(self._every, NOTICE_SWEEP_EVERY_S, self.sweep_notices),
                   "notice sweeps")
        self._loop(self.publisher.run, "outbox")
        self._loop(self._reconcile_payouts, "payouts")
        self._loop(functools.partial(self._every, PAYOUTS_EVERY_S, self._reconcile_payouts),
                   "payout reconcile")
        self._loop(functools.partial(self._every, self.replica.lease_s / 3, self._renew_leases),
                   "leases")
        if isinstance(p.wallet, SettlementSource):
            self._loop(functools.partial(self.settlements.run, p.wallet), "settlements")
        self._loop(functools.partial(self._every, float(p.service.settlement_poll_s),
                                     self._poll_settlements), "settlement poll")
        self._loop(self._watch_requests, "reconcile")
        self._loop(functools.partial(self._every, ERASE_EVERY_S, self._erase), "erase")
        await self.inbox.start()
        await self.jobs.start()
        if p.profile.lud16:
            address = AgentAddress(p.profile.lud16, self.lnurl)
            self.zaps = ZapIntake(agent_pubkey=p.keys.public_hex, address=address,
                                  ledger=self.ledger, intake=self.intake,
                                  job_for_event=self._job_for_event, on_zap=self._on_zap,
                                  metrics=self.metrics)
            await self.zaps.start(self.pool)
        self._loop(self._publish_profile, "profile")
        self._loop(functools.partial(self._announce_every, ANNOUNCE_EVERY_S), "announcement")
        await self.pool.wait_connected(10.0)
        self.started.set()

    def _loop(self, run: Callable[[], Awaitable[None]], name: str) -> None:
        self._tasks.append(asyncio.create_task(restarting(run, name), name=name))

    async def _every(self, period_s: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                await step()
            except Exception:
                log.exception("agent: periodic step failed")

    async def _reconcile_payouts(self) -> None:
        for outcome in await self.payouts.reconcile():
            log.info("payout of job %s reconciled: %s", outcome.job_id[:8], outcome.status.value)

    async def _poll_settlements(self) -> None:
        before = len(await self.ledger.open_invoices())
        await self.settlements.poll(self.parts.wallet)
        if len(await self.ledger.open_invoices()) != before:  # some expired or were paid
            await self._reconcile_requests()

    async def _renew_leases(self) -> None:
        await self.intake.renew_leases(self.flow.working())

    async def _watch_requests(self) -> None:
        """Reconcile every ``RECONCILE_S``, just after another replica's lease expires (its
        work is then taken over here), and at once when another replica gives work back
        (PostgreSQL notifications)."""
        while True:
            expiry = await self.intake.next_lease_expiry()
            delay = RECONCILE_S if expiry is None else expiry - self._clock() + 0.2
            delay = min(RECONCILE_S, max(0.2, delay))
            try:
                if await self.intake.wait_for_work(delay):
                    log.info("work given back by another replica: reconciling")
            except StorageFailure as exc:
                log.warning("agent: no notifications (%s); reconciling on the timer", exc)
                await asyncio.sleep(delay)
            try:
                await self._reconcile_requests()
            except Exception:
                log.exception("agent: reconcile failed")

    async def _reconcile_requests(self) -> None:
        """Requests whose job moved without us (paid by a zap or a poll, expired), or left by
        another replica (stopped, or dead: its lease expired): the start-up sweep too."""
        working = set(self.flow.working())
        now = self._clock()
        for request in await self.intake.unfinished_requests():
            if request.id in working or (request.lease_owner not in (None, self.replica.id)
                                         and request.lease_until > now):
                continue  # advancing here already, or another live replica's
            if request.state is RequestState.NEW:
                self.queue.submit(request.sender, request.id)
                continue
            try:
                job = await self.ledger.job(request.id)
            except UnknownJob:
                continue
            if str(job.state) != "invoiced":
                self.queue.submit(request.sender, request.id)

    async def _erase(self) -> None:
        cutoff = int(self._clock()) - self.parts.service.retention_days * 86_400
        erased = await self.intake.erase_before(cutoff)
        if erased:
            log.info("erased the texts of %d old requests", erased)

    async def _fetch_events(self, filters: list[dict[str, object]]) -> list[Event]:
        """Events from the read relays (NIP-90 ``event`` and ``job`` inputs), within 5 s."""
        return await self.pool.fetch(filters, timeout_s=FETCH_EVENT_S)

    async def _job_for_event(self, event_id: str) -> str | None:
        """A zap whose request names one of our quotes pays that quote's job."""
        key = await self.outbox.key_of(event_id)
        if key is None or not key.startswith("reply:"):
            return None
        job_id = key.removeprefix("reply:")
        try:
            await self.ledger.job(job_id)
        except UnknownJob:
            return None
        return job_id

    async def _on_zap(self, result: ZapResult) -> None:
        """A zap that paid one of our quotes: its job goes on at once (else the reconcile), and
        late, double or excess money is told like a settlement's."""
        if result.job_id is None:
            return
        job = await self.ledger.job(result.job_id)
        self.queue.submit(job.pubkey, job.id)
        payment = result.payment
        if payment is not None and result.zap is not None:
            await self._tell_payer(Applied(result.zap.payment_hash, job.pubkey,
                                           payment.amount_msat, payment,
                                           payment.credited_balance_msat))

    async def _publish_profile(self) -> None:
        p = self.parts
        for event in own_profile(p.keys, p.profile, p.profile.lud16 or None, p.relays):
            result = await self.pool.publish(event, timeout_s=15.0)
            if not result.ok:
                log.warning("profile event kind %d not accepted: %s", event.kind,
                            dict(result.refused))

    async def _announce_every(self, period_s: float) -> None:
        """The NIP-89 announcement at start, then refreshed every ``period_s`` and at once when
        an admin changes the limits or pauses (its content carries the free allowance). It is
        never deleted: clients keep finding the agent across restarts. Each one is dated after
        the last, so a relay never keeps the older of two made in one second."""
        last = 0
        while True:
            self.controls.changed.clear()
            p = self.parts
            last = max(int(self._clock()), last + 1)
            event = job_handler(p.keys, p.profile, p.pricing, self.controls.limits, p.max_tokens,
                                p.backend.models, paused=self.controls.paused, created_at=last)
            result = await self.pool.publish(event, timeout_s=15.0)
            if not result.ok:
                log.warning("announcement not accepted: %s", dict(result.refused))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period_s):
                    await self.controls.changed.wait()

    async def stop(self) -> None:
        """Stop taking requests, finish or park running work, flush, close. Always returns."""
        grace = float(self.parts.service.stop_grace_s)
        await self.jobs.stop()
        for sub in self.inbox.subscriptions:
            with contextlib.suppress(Exception):
                await self.pool.unsubscribe(sub)
        self.queue.close()
        finished = await self.queue.join(grace)
        if not finished:
            log.warning("stop: work still running after %.0f s was parked for the next start",
                        grace)
        await self.flow.drain(2.0)
        left = await self.publisher.flush(5.0)
        if left:
            log.warning("stop: %d outbox events not yet delivered; retried at the next start", left)
        if self.zaps is not None:
            await self.zaps.stop()
        await cancel_all(self._tasks)
        with contextlib.suppress(Exception):  # parked work: another replica may take it at once
            await self.intake.release_leases()
        await self.pool.stop()
