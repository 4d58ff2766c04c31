"""Zap receipt intake: kind-9735 receipts addressed to the agent → the pool (or a job), once.

``ZapIntake(agent_pubkey=, address=, ledger=, intake=, ...)``:

- ``await start(pool)`` subscribes to ``{"kinds": [9735], "#p": [agent]}`` on the relay pool; the
  pool's handler only queues the receipt, a worker task handles it (``handle``).
- ``handle(receipt)`` → :class:`ZapResult`:

  1. the receipt is validated per NIP-57 appendix F (``bot.nostr.nip57.validate_zap_receipt``)
     against the ``nostrPubkey`` that the agent's own LNURL endpoint advertises
     (:class:`~bot.wallets.lightning_address.AgentAddress`, fetched and cached) and the agent's
     lnurl. A rejection is logged with its reason and credits nothing (``REJECTED``).
  2. an optional ``payment_check`` (``async (ValidZap) -> bool``) is asked whether the invoice was
     really paid: :class:`VerifyUrlCheck` (the provider's LUD-21 verify URL) or
     :class:`WalletLookupCheck` (the agent's own wallet, when it backs the address). ``False``
     (not settled, or unknown to the provider or the wallet) → ``REJECTED`` (``unpaid``); no
     answer → ``RETRY``.
  3. a receipt for a zap request the agent signed itself is an invoice of the Lightning-address
     backend: it goes to ``own_invoice`` (``LightningAddressWallet.receipt_seen``), which feeds
     the normal settlement path — the intake never moves money for it (``OWN_INVOICE``), with or
     without a sink, so a payment can never count both as a job payment and as pool funding.
  4. a zap whose request has an ``e`` tag naming one of the agent's quotes or job events
     (``job_for_event``: event id → job id) pays that job: ``ledger.confirm_payment(job_id,
     amount, key="zap:<payment hash>")`` (``JOB``; late, double or excess money becomes the job
     owner's balance, as the ledger decides).
  5. every other zap funds the pool: ``ledger.credit_pool(amount, "zap:<payment hash>",
     source="zap", zapper_pubkey=zapper, note=comment)`` (``POOL``), which records the zapper,
     the amount and the zap request's comment (one line, :func:`zap_note`) for the pool page.

  The ledger key ``zap:<payment hash>`` makes a receipt counted exactly once, however many relays
  deliver it, however often it is replayed (a replay under a new event id too). ``first_time`` is
  true once per payment hash (``storage.Intake`` claim ``zap:<hash>``), and ``on_zap`` is awaited
  then (the agent sends a paid job on and tells the payer of late, double or excess money: the
  notice is stored in the outbox by payment hash, and a crash between the ledger write and the
  notice is caught by the agent's start-up sweep over the ledger, not by this claim).
- A rejected receipt counts in ``metrics.rejected`` as ``zap receipt`` (its reason is logged).
- When the LNURL endpoint, the payment check or the ledger cannot be reached, the result is
  ``RETRY`` and the receipt is queued again after ``retry_delay_s`` (up to ``max_retries``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.agent.metrics import Metrics
from bot.nostr import nip57
from bot.nostr.event import Event
from bot.nostr.nip57 import ValidZap, ZapInvalid
from bot.relays.tasks import cancel_all
from bot.wallets.base import InvoiceState, LnurlError, Wallet, WalletError, WalletRefused
from bot.wallets.bolt11 import preimage_matches
from bot.wallets.lightning_address import AgentAddress
from bot.wallets.lnurl import LnurlClient
from bot.wallets.nwc import EventChannel
from storage import (
    IdempotencyConflict,
    Intake,
    InvalidInput,
    Ledger,
    LedgerError,
    PaymentOutcome,
    UnknownJob,
)

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
"""Receipts waiting to be handled; beyond it the relay pool's dispatcher waits."""
STOP_STEP_TIMEOUT_S = 5.0
"""How long ``stop`` waits for the pool to unsubscribe."""

PaymentCheck = Callable[[ValidZap], Awaitable[bool]]
JobResolver = Callable[[str], Awaitable[str | None]]
OwnInvoiceSink = Callable[[ValidZap], Any]
OnZap = Callable[["ZapResult"], Awaitable[None]]


NOTE_CHARS = 280
"""A zap's comment is kept for the pool page on one line of at most this many characters."""


def zap_note(comment: str) -> str:
    """The zap request's comment as the pool's note: whitespace runs made one space, anything
    unprintable dropped, cut to :data:`NOTE_CHARS`."""
    text = " ".join(comment.split())
    return "".join(c for c in text if c.isprintable())[:NOTE_CHARS].strip()


def zap_key(payment_hash: str) -> str:
    """The ledger idempotency key of a zap."""
    return f"zap:{payment_hash}"


class ZapOutcome(StrEnum):
    POOL = "pool"
    JOB = "job"
    OWN_INVOICE = "own_invoice"
    REJECTED = "rejected"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class ZapResult:
    outcome: ZapOutcome
    receipt_id: str
    reason: str | None = None
    zap: ValidZap | None = None
    job_id: str | None = None
    payment: PaymentOutcome | None = None
    first_time: bool = False


class VerifyUrlCheck:
    """Ask the provider's LUD-21 verify URL, built from a template with ``{payment_hash}``."""

    def __init__(self, lnurl: LnurlClient, template: str) -> None:
        if "{payment_hash}" not in template:
            raise ValueError("the verify URL template needs {payment_hash}")
        self._lnurl = lnurl
        self._template = template

    async def __call__(self, zap: ValidZap) -> bool:
        url = self._template.format(payment_hash=zap.payment_hash)
        try:
            result = await self._lnurl.verify(url, payment_hash=zap.payment_hash)
        except LnurlError as exc:
            if exc.code in ("service_error", "hash_mismatch"):
                # the provider knows no such payment, or answered about another one
                return False
            raise
        if not result.settled:
            return False
        return result.preimage is None or preimage_matches(result.preimage, zap.payment_hash)


class WalletLookupCheck:
    """Ask the agent's own wallet (when it is the one behind the lightning address)."""

    def __init__(self, wallet: Wallet) -> None:
        self._wallet = wallet

    async def __call__(self, zap: ValidZap) -> bool:
        try:
            status = await self._wallet.lookup_invoice(zap.payment_hash)
        except WalletRefused:  # the wallet answered: not an invoice of ours
            return False
        return status.state is InvoiceState.SETTLED and status.amount_msat >= zap.amount_msat


def ledger_job_resolver(ledger: Ledger) -> JobResolver:
    """The default ``job_for_event``: an event id that is itself a job id."""

    async def resolve(event_id: str) -> str | None:
        try:
            return (await ledger.job(event_id)).id
        except LedgerError:  # UnknownJob included
            return None

    return resolve


class ZapIntake:
    """See the module docstring."""

    def __init__(
        self,
        *,
        agent_pubkey: str,
        address: AgentAddress,
        ledger: Ledger,
        intake: Intake,
        job_for_event: JobResolver | None = None,
        payment_check: PaymentCheck | None = None,
        own_invoice: OwnInvoiceSink | None = None,
        on_zap: OnZap | None = None,
        retry_delay_s: float = 30.0,
        max_retries: int = 20,
        metrics: Metrics | None = None,
    ) -> None:
        self.agent_pubkey = agent_pubkey
        self._metrics = metrics or Metrics()
        self._address = address
        self._ledger = ledger
        self._intake = intake
        self._job_for_event = job_for_event or ledger_job_resolver(ledger)
        self._payment_check = payment_check
        self._own_invoice = own_invoice
        self._on_zap = on_zap
        self._retry_delay_s = retry_delay_s
        self._max_retries = max_retries
        self._queue: asyncio.Queue[tuple[Event, int]] = asyncio.Queue(QUEUE_SIZE)
        self._worker: asyncio.Task[None] | None = None
        self._pool: EventChannel | None = None
        self._sub: Any = None
        self._later: set[asyncio.Task[None]] = set()
        self.results: list[ZapResult] = []
        """Every result, in order (for tests and stats; bounded to the last 1000)."""

    def filters(self) -> list[dict[str, Any]]:
        return [{"kinds": [nip57.ZAP_RECEIPT_KIND], "#p": [self.agent_pubkey]}]

    async def start(self, pool: EventChannel) -> None:
        self._pool = pool
        self._worker = asyncio.create_task(self._work(), name="zap intake")
        # no durable claim of the receipt's id before it is credited: a crash in between would
        # lose it; the ledger key zap:<payment hash> counts a re-delivered receipt once
        self._sub = await pool.subscribe(self.filters(), self._on_event, durable_claim=False)

    async def stop(self) -> None:
        """Unsubscribe and stop the worker, in bounded time (a cancellation lost inside a
        handler is repeated; see ``bot.relays.tasks``)."""
        if self._pool is not None and self._sub is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_STEP_TIMEOUT_S):
                    await self._pool.unsubscribe(self._sub)
            self._sub = None
        worker, self._worker = self._worker, None
        await cancel_all([*self._later, *([worker] if worker else [])])
        self._later.clear()

    async def _on_event(self, event: Event, relay_url: str) -> None:
        await self._queue.put((event, 0))  # a full queue slows the pool down, loses nothing

    async def drain(self) -> None:
        """Wait until every queued receipt has been handled (tests, shutdown)."""
        await self._queue.join()

    async def _work(self) -> None:
        while True:
            event, attempt = await self._queue.get()
            try:
                result = await self.handle(event)
                if result.outcome is ZapOutcome.RETRY and attempt < self._max_retries:
                    self._retry_later(event, attempt + 1)
            except Exception:
                log.exception("zap intake: handling receipt %s failed", event.id)
            finally:
                self._queue.task_done()

    def _retry_later(self, event: Event, attempt: int) -> None:
        async def later() -> None:
            await asyncio.sleep(self._retry_delay_s)
            await self._queue.put((event, attempt))

        task = asyncio.create_task(later())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    def _record(self, result: ZapResult) -> ZapResult:
        self.results.append(result)
        del self.results[:-1000]
        return result

    async def handle(self, receipt: Event) -> ZapResult:
        """Validate one receipt and move the money it proves, exactly once."""
        try:
            provider = await self._address.nostr_pubkey()
        except LnurlError as exc:
            log.warning("zap %s: our LNURL endpoint is unavailable (%s)", receipt.id, exc.code)
            return self._record(ZapResult(ZapOutcome.RETRY, receipt.id, "provider_unavailable"))
        checked = nip57.validate_zap_receipt(
            receipt,
            provider_pubkey=provider,
            recipient_pubkey=self.agent_pubkey,
            recipient_lnurl=self._address.lnurl,
        )
        if isinstance(checked, ZapInvalid):
            return self._reject(receipt, checked.reason.value, checked.detail)
        zap = checked

        if self._payment_check is not None:
            try:
                paid = await self._payment_check(zap)
            except (WalletError, LnurlError) as exc:
                log.warning("zap %s: payment check unavailable (%s); retrying", receipt.id, exc)
                return self._record(ZapResult(ZapOutcome.RETRY, receipt.id, "check_unavailable"))
            if not paid:
                return self._reject(receipt, "unpaid", f"invoice {zap.payment_hash} is not paid")

        if zap.zapper_pubkey == self.agent_pubkey:
            # an invoice the agent asked its own address for (a job or a top-up): its money is
            # counted by the settlement path, never as pool funding, even with no sink wired
            if self._own_invoice is not None:
                outcome = self._own_invoice(zap)
                if asyncio.iscoroutine(outcome):
                    await outcome
            log.info("zap %s: receipt for our own invoice %s", receipt.id, zap.payment_hash)
            return self._record(ZapResult(ZapOutcome.OWN_INVOICE, receipt.id, zap=zap))

        key = zap_key(zap.payment_hash)
        try:
            job_id = await self._job_for_event(zap.event_id) if zap.event_id else None
            payment: PaymentOutcome | None = None
            if job_id is not None:
                try:
                    payment = await self._ledger.confirm_payment(job_id, zap.amount_msat, key)
                except UnknownJob:
                    job_id = None
            if payment is None:
                await self._ledger.credit_pool(
                    zap.amount_msat, key, source="zap", zapper_pubkey=zap.zapper_pubkey,
                    note=zap_note(zap.comment),
                )
        except IdempotencyConflict:
            return self._reject(receipt, "conflicting_replay", "same payment hash, other terms")
        except InvalidInput as exc:
            return self._reject(receipt, "ledger_refused", type(exc).__name__)
        except LedgerError as exc:
            log.error("zap %s: ledger refused (%s); retrying", receipt.id, type(exc).__name__)
            return self._record(ZapResult(ZapOutcome.RETRY, receipt.id, "ledger_error"))

        first = await self._intake.claim(key)
        result = ZapResult(
            ZapOutcome.JOB if payment is not None else ZapOutcome.POOL,
            receipt.id,
            zap=zap,
            job_id=job_id,
            payment=payment,
            first_time=first,
        )
        if first:
            log.info(
                "zap %s: %s msat from %s → %s",
                receipt.id,
                zap.amount_msat,
                zap.zapper_pubkey,
                f"job {job_id}" if job_id else "the pool",
            )
            if self._on_zap is not None:
                try:
                    await self._on_zap(result)
                except Exception:
                    log.exception("zap %s: on_zap callback failed", receipt.id)
        else:
            log.info("zap %s: payment %s already counted", receipt.id, zap.payment_hash)
        return self._record(result)

    def _reject(self, receipt: Event, reason: str, detail: str) -> ZapResult:
        log.warning("zap receipt %s rejected: %s (%s)", receipt.id, reason, detail)
        self._metrics.rejected.labels("zap receipt").inc()
        return self._record(ZapResult(ZapOutcome.REJECTED, receipt.id, reason))
