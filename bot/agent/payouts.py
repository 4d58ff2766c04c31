"""Refunds out: record the payout in the ledger, send it, confirm or fail it; reconcile later.

``Payouts(ledger, wallet, lnurl=None, policy=PayoutPolicy(), clock=time.time, metrics=None,
replica=None)`` (``policy``: the ``[wallet]`` payout fee cap, ``WalletConfig.payout_policy``;
every payout attempted counts in ``metrics.payouts`` by its status; ``replica``: this process
among the agents sharing the ledger, ``storage.Replica``):

- ``pay_to_invoice(job_id, pubkey, bolt11)`` → :class:`PayoutOutcome`. The invoice must ask
  exactly the pending refund, on the wallet's network, and not be (about to be) expired; the job
  must belong to ``pubkey`` and have a ``pending`` refund. Otherwise the outcome is ``REJECTED``
  with a reason for the asker, and nothing is written.
- ``pay_to_address(job_id, pubkey, lud16)``: fetches an invoice from the lightning address
  (LUD-16, checked by :class:`~bot.wallets.lnurl.LnurlClient`) for the refund's **whole sats**
  (lightning-address services such as LNbits' round msat amounts down, so an exact msat amount
  would come back as a mismatching invoice), then as above; once it is paid, the msat remainder
  becomes the asker's balance in the same ledger operation (``kept_as_balance_msat``). A refund
  below 1 sat is ``REJECTED`` (keep it as balance instead).
- ``keep_as_balance(job_id, pubkey)``: the pending refund becomes the asker's balance instead.
- ``reconcile()`` → list of outcomes: every payout the ledger still holds as ``sending`` (for
  example after a crash) and no other live replica holds (``Ledger.claim_payout``: its row is
  the lock, leased before the wallet is asked) is looked up by its payment hash: settled →
  confirmed; failed → failed (the refund is claimable again); in flight → left alone; unknown
  to the wallet → sent now if its invoice is still valid (one payment hash can only be paid
  once), failed otherwise.

The steps, in order, so a crash anywhere loses nothing and pays nothing twice:

1. ``record(...)`` — ``ledger.begin_payout(job_id, destination=bolt11, key, replica=...)``: the
   payout, its pending ``refunds → payouts`` transfer and its lease to this replica are
   committed *before* anything is sent (so no other replica's reconcile sends it too). The
   destination stored is the bolt11 itself, so the payment hash can always be recovered.
2. ``send(payout)`` — ``wallet.pay_invoice(bolt11, max_fee_msat=policy.fee_cap(amount))``.
3. ``SUCCEEDED`` → ``ledger.confirm_payout(id, preimage, fee)``; ``FAILED`` →
   ``ledger.fail_payout(id, reason)``; ``PENDING`` or no answer → left ``sending`` for
   ``reconcile``. A late answer is never taken for a failure.

Outcome values: :class:`PayoutStatus` ``PAID`` / ``FAILED`` (refund claimable again) /
``IN_FLIGHT`` / ``REJECTED`` (nothing written). Routing fees are the operator's (the ledger books
them ``operator → fees``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from bot.agent.metrics import Metrics
from bot.wallets.base import (
    InvalidInvoice,
    LnurlError,
    PaymentResult,
    PaymentState,
    Wallet,
    WalletError,
)
from bot.wallets.bolt11 import check_payable, decode_invoice
from bot.wallets.config import PayoutPolicy
from bot.wallets.lnurl import LnurlClient
from storage import (
    IllegalTransition,
    Ledger,
    LedgerError,
    Payout,
    PayoutState,
    RefundState,
    Replica,
)

log = logging.getLogger(__name__)


class PayoutStatus(StrEnum):
    PAID = "paid"
    FAILED = "failed"
    IN_FLIGHT = "in_flight"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class PayoutOutcome:
    job_id: str
    status: PayoutStatus
    amount_msat: int
    payout_id: int | None = None
    preimage: str | None = None
    fee_msat: int | None = None
    reason: str | None = None
    kept_as_balance_msat: int = 0  # the unsent msat remainder of a paid refund, now balance


def whole_sats_of(amount_msat: int) -> int:
    """``amount_msat`` rounded down to whole sats (in msat)."""
    return amount_msat - amount_msat % 1000


def payout_key(job_id: str, payment_hash: str) -> str:
    """A fresh idempotency key for one payout attempt of ``job_id`` to ``payment_hash``.

    Fresh on purpose: the ledger lets only one payout of a refund be ``sending`` at a time, so
    of two concurrent attempts (two tasks or two processes) exactly one records a payout and
    sends it; the other is rejected before sending anything. A crash after recording is
    resolved by ``reconcile`` from the ledger, not by repeating the call."""
    return f"payout:{job_id}:{payment_hash}:{secrets.token_hex(8)}"


class Payouts:
    """See the module docstring."""

    def __init__(
        self,
        ledger: Ledger,
        wallet: Wallet,
        *,
        lnurl: LnurlClient | None = None,
        policy: PayoutPolicy | None = None,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        replica: Replica | None = None,
    ) -> None:
        self._ledger = ledger
        self._metrics = metrics or Metrics()
        self._replica = replica or Replica()
        self._wallet = wallet
        self._lnurl = lnurl
        self._policy = policy or PayoutPolicy()
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    def _now(self) -> int:
        return int(self._clock())

    async def _owed(self, job_id: str, pubkey: str) -> int | PayoutOutcome:
        try:
            job = await self._ledger.job(job_id)
        except LedgerError:
            job = None
        if job is None or job.pubkey != pubkey:  # another's job is no job of the asker's
            return PayoutOutcome(job_id, PayoutStatus.REJECTED, 0, reason="no such job")
        if job.refund_state is not RefundState.PENDING or job.refund_msat <= 0:
            return PayoutOutcome(
                job_id, PayoutStatus.REJECTED, job.refund_msat,
                reason=f"no refund to claim (refund is {job.refund_state.value})",
            )
        return job.refund_msat

    async def record(
        self, job_id: str, pubkey: str, bolt11: str, *, whole_sats: bool = False
    ) -> Payout | PayoutOutcome:
        """Step 1: check the invoice and record the payout (nothing is sent).

        The invoice must ask exactly the refund owed — or, with ``whole_sats``, its whole sats
        (the msat remainder then becomes balance when the payout is confirmed)."""
        owed = await self._owed(job_id, pubkey)
        if isinstance(owed, PayoutOutcome):
            return owed
        send = whole_sats_of(owed) if whole_sats else owed
        try:
            decoded = decode_invoice(bolt11)
            check_payable(decoded, amount_msat=send, network=self._wallet.network,
                          now=self._now())
        except InvalidInvoice as exc:
            return PayoutOutcome(job_id, PayoutStatus.REJECTED, owed, reason=str(exc))
        try:
            return await self._ledger.begin_payout(
                job_id, decoded.bolt11, payout_key(job_id, decoded.payment_hash),
                amount_msat=send, replica=self._replica,
            )
        except IllegalTransition:
            return PayoutOutcome(job_id, PayoutStatus.REJECTED, owed,
                                 reason="a payout of this refund is already under way")
        except LedgerError as exc:
            return PayoutOutcome(job_id, PayoutStatus.REJECTED, owed,
                                 reason=f"cannot start the payout: {type(exc).__name__}")

    async def send(self, payout: Payout) -> PayoutOutcome:
        """Steps 2–3: pay the recorded invoice and confirm or fail the payout."""
        if payout.state is not PayoutState.SENDING:
            return self._from_payout(payout)
        try:
            result = await self._wallet.pay_invoice(
                payout.destination, max_fee_msat=self._policy.fee_cap(payout.amount_msat)
            )
        except InvalidInvoice as exc:  # cannot happen for a recorded (checked) invoice
            return await self._fail(payout, f"invoice refused: {exc}")
        except WalletError as exc:
            log.warning("payout %d: no answer from the wallet (%s); will look it up",
                        payout.payout_id, type(exc).__name__)
            return self._in_flight(payout, "no answer from the wallet")
        if result.state is PaymentState.FAILED:
            # Trust "failed" only if the wallet's own record agrees: a repeated attempt at an
            # invoice already paid (or still in flight) is refused, and must not void the payout.
            try:
                recorded = await self._wallet.lookup_payment(result.payment_hash)
            except WalletError:
                return self._in_flight(payout, "payment refused; its state is being checked")
            if recorded.state in (PaymentState.SUCCEEDED, PaymentState.PENDING):
                result = recorded
        return await self._apply(payout, result)

    async def _apply(self, payout: Payout, result: PaymentResult) -> PayoutOutcome:
        if result.state is PaymentState.SUCCEEDED:
            # A backend that reports success without a preimage still paid: confirm with a
            # reference naming the payment hash rather than leave the payout open forever.
            reference = result.preimage or f"paid-without-preimage:{result.payment_hash}"
            done = await self._ledger.confirm_payout(
                payout.payout_id, reference, result.fee_msat or 0
            )
            log.info("payout %d of job %s paid (%d msat)", done.payout_id, done.job_id,
                     done.amount_msat)
            return self._from_payout(done)
        if result.state is PaymentState.FAILED:
            return await self._fail(payout, result.reason or "payment failed")
        return self._in_flight(payout, result.reason or "payment in flight")

    async def _fail(self, payout: Payout, reason: str) -> PayoutOutcome:
        failed = await self._ledger.fail_payout(payout.payout_id, reason[:200])
        log.info("payout %d of job %s failed: %s", failed.payout_id, failed.job_id, reason)
        return self._from_payout(failed)

    @staticmethod
    def _in_flight(payout: Payout, reason: str) -> PayoutOutcome:
        return PayoutOutcome(payout.job_id, PayoutStatus.IN_FLIGHT, payout.amount_msat,
                             payout.payout_id, reason=reason)

    @staticmethod
    def _from_payout(payout: Payout) -> PayoutOutcome:
        status = {
            PayoutState.PAID: PayoutStatus.PAID,
            PayoutState.FAILED: PayoutStatus.FAILED,
            PayoutState.SENDING: PayoutStatus.IN_FLIGHT,
        }[payout.state]
        kept = payout.remainder_msat if payout.state is PayoutState.PAID else 0
        return PayoutOutcome(payout.job_id, status, payout.amount_msat, payout.payout_id,
                             payout.preimage, payout.fee_msat, payout.reason, kept)

    def _lock(self, job_id: str) -> asyncio.Lock:
        return self._locks.setdefault(job_id, asyncio.Lock())

    async def pay_to_invoice(
        self, job_id: str, pubkey: str, bolt11: str, *, whole_sats: bool = False
    ) -> PayoutOutcome:
        async with self._lock(job_id):
            recorded = await self.record(job_id, pubkey, bolt11, whole_sats=whole_sats)
            if isinstance(recorded, PayoutOutcome):
                return self._counted(recorded)
            return self._counted(await self.send(recorded))

    def _counted(self, outcome: PayoutOutcome) -> PayoutOutcome:
        self._metrics.payouts.labels(outcome.status.value).inc()
        return outcome

    async def pay_to_address(self, job_id: str, pubkey: str, address: str) -> PayoutOutcome:
        owed = await self._owed(job_id, pubkey)
        if isinstance(owed, PayoutOutcome):
            return self._counted(owed)
        if self._lnurl is None:
            return self._counted(PayoutOutcome(
                job_id, PayoutStatus.REJECTED, owed,
                reason="paying lightning addresses is not configured"))
        send = whole_sats_of(owed)
        if send == 0:
            return self._counted(PayoutOutcome(
                job_id, PayoutStatus.REJECTED, owed,
                reason="less than 1 sat cannot be sent: keep it as balance"))
        try:
            got = await self._lnurl.invoice_for_address(
                address, send, network=self._wallet.network
            )
        except LnurlError as exc:
            return self._counted(PayoutOutcome(job_id, PayoutStatus.REJECTED, owed,
                                               reason=f"lightning address: {exc}"))
        return await self.pay_to_invoice(job_id, pubkey, got.bolt11, whole_sats=True)

    async def keep_as_balance(self, job_id: str, pubkey: str) -> PayoutOutcome:
        """The asker keeps a pending refund as balance instead of a payout (status ``PAID``,
        reason ``"kept as balance"``); ``REJECTED`` when there is nothing to claim."""
        async with self._lock(job_id):
            owed = await self._owed(job_id, pubkey)
            if isinstance(owed, PayoutOutcome):
                return owed
            try:
                await self._ledger.credit_refund_to_balance(job_id)
            except LedgerError as exc:
                return PayoutOutcome(job_id, PayoutStatus.REJECTED, owed,
                                     reason=f"cannot keep it as balance: {type(exc).__name__}")
            return PayoutOutcome(job_id, PayoutStatus.PAID, owed, reason="kept as balance")

    async def reconcile(self) -> list[PayoutOutcome]:
        """Resolve every payout still ``sending`` (run at start and from time to time)."""
        outcomes: list[PayoutOutcome] = []
        for payout in await self._ledger.unfinished_payouts():
            try:
                async with self._lock(payout.job_id):
                    # False when another live replica holds it, or when it finished meanwhile
                    # (this process was sending it while the list was read)
                    if not await self._ledger.claim_payout(payout.payout_id, self._replica):
                        continue
                    outcomes.append(self._counted(await self._reconcile_one(payout)))
            except WalletError as exc:
                log.warning("payout %d: lookup failed (%s); will retry", payout.payout_id,
                            type(exc).__name__)
                outcomes.append(self._in_flight(payout, "wallet unavailable"))
        return outcomes

    async def _reconcile_one(self, payout: Payout) -> PayoutOutcome:
        try:
            decoded = decode_invoice(payout.destination)
        except InvalidInvoice:
            return await self._fail(payout, "recorded destination is not an invoice")
        found = await self._wallet.lookup_payment(decoded.payment_hash)
        if found.state is PaymentState.NOT_FOUND:
            if decoded.is_expired(self._now()):
                return await self._fail(payout, "never sent and the invoice has expired")
            log.info("payout %d was recorded but never sent: sending it now", payout.payout_id)
            return await self.send(payout)
        return await self._apply(payout, found)
