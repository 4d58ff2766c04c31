"""Settlements from a wallet → payments in the ledger, exactly once per payment hash.

``SettlementProcessor(ledger, on_credit=None, expiry_grace_s=60)``:

- ``apply(settlement)`` → :class:`Applied` or ``None``. A settlement for a job invoice becomes
  ``ledger.confirm_payment(payment_hash, amount_msat, key=payment_key(hash))``; the ledger decides
  what the money does: paid in time and exact → the job proceeds; **overpaid** → the excess
  becomes the payer's balance; **late** (after the job expired), **double** (job already paid),
  **underpaid** or **not due** (a free job or a session) → all of it becomes the payer's balance;
  never lost. A settlement for a top-up invoice (recorded with ``ledger.record_topup`` when it
  was made) becomes ``ledger.confirm_topup`` with the same key: all of it is the owner's
  balance, late or not. The same key makes any repeat of the same payment hash (websocket and
  webhook repeats, polling, a restart) a no-op returning the first outcome. A payment hash that
  is neither is logged at error level and returns ``None`` (nothing is credited).
- ``run(source)`` consumes a :class:`~bot.wallets.base.SettlementSource` forever.
- ``poll(wallet, payment_hashes=None)`` is the fallback where nothing is pushed (or the push
  channel dropped, or the agent was down): each hash is looked up and settled ones are applied.
  Without hashes it polls every invoice the ledger still holds open (``ledger.open_invoices()``:
  jobs and top-ups), and expires (``expire_job`` / ``expire_topup``, which move no money) those
  the wallet reports expired or failed, or still unpaid (or refused by the wallet, e.g. unknown
  to it) ``expiry_grace_s`` after their expiry; a wallet that cannot be reached expires nothing. A
  payment that still arrives after that becomes balance (``LATE``).
- ``on_credit`` (``async (Applied) -> None``) is awaited after every application, a repeat
  included, so the agent can act on it (a paid job goes to the work queue) and tell the payer
  what happened (:func:`payer_message` renders the text). It must be idempotent per payment
  hash: the agent stores its notice in the outbox under :func:`notice_key`, once, and the outbox
  republishes a stored notice until a relay takes it. There is no separate "notified" claim: a
  crash after the ledger counted a payment and before its notice was stored (or a failure to
  store it) leaves a payment with no notice, and ``credited_since(since, after_transfer)``
  finds it again (every payment the ledger credited to a balance since then, rebuilt from the
  ledger's own records) for the agent's sweep, at start and every minute; the wallet's stream
  does not replay, and the start-up poll only looks at invoices still open.

:func:`payment_key` is the idempotency key every intake path must use for a payment hash
(``pay:<hash>``), so that a payment seen by two paths is still counted once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from bot.agent.texts import sats
from bot.wallets.base import (
    InvoiceState,
    InvoiceStatus,
    Settlement,
    SettlementSource,
    Wallet,
    WalletError,
    WalletRefused,
)
from storage import (
    IdempotencyConflict,
    IllegalTransition,
    InvoiceKind,
    Ledger,
    LedgerError,
    OpenInvoice,
    PaymentOutcome,
    PaymentVerdict,
    TopupPayment,
    TopupResult,
    UnknownJob,
    UnknownTopup,
)

log = logging.getLogger(__name__)

DEFAULT_EXPIRY_GRACE_S = 60
"""How long past its expiry an unpaid invoice stays open to polling (clock skew, late HTLCs)."""


def payment_key(payment_hash: str) -> str:
    """The ledger idempotency key of an incoming payment."""
    return f"pay:{payment_hash}"


def notice_key(payment_hash: str) -> str:
    """The outbox key of what the payer is told about a payment (one message per payment
    hash, whichever path counted it: a settlement or a zap)."""
    return f"settled:{payment_hash}"


@dataclass(frozen=True, slots=True)
class Applied:
    """What one settlement did: a job payment (``PaymentOutcome``) or a top-up
    (``TopupPayment``, all of it balance)."""

    payment_hash: str
    pubkey: str
    amount_msat: int
    outcome: PaymentOutcome | TopupPayment
    credited_balance_msat: int


def _topup_message(outcome: TopupPayment, credited: str) -> str:
    if outcome.result is TopupResult.LATE:
        return (f"Your top-up arrived after its invoice expired. It is not lost: {credited} "
                f"added to your balance.")
    if outcome.result is TopupResult.DUPLICATE:
        return (f"This top-up invoice was already paid. Your extra payment is not lost: "
                f"{credited} added to your balance.")
    return f"Top-up received: {credited} added to your balance."


def payer_message(applied: Applied) -> str | None:
    """What to tell the payer, or ``None`` when the normal job flow says it already."""
    outcome = applied.outcome
    credited = sats(applied.credited_balance_msat)
    if isinstance(outcome, TopupPayment):
        return _topup_message(outcome, credited)
    result = outcome.result
    if result is PaymentVerdict.PAID:
        return None
    if result is PaymentVerdict.OVERPAID:
        return f"Payment received. You paid more than the invoice: {credited} went to your balance."
    if result is PaymentVerdict.LATE:
        return (f"Your payment arrived after the quote expired, so the job did not run. "
                f"It is not lost: {credited} are now your balance.")
    if result is PaymentVerdict.DUPLICATE:
        return (f"This job was already paid. Your extra payment is not lost: {credited} are "
                f"now your balance.")
    if result is PaymentVerdict.UNDERPAID:
        return (f"Your payment was less than the invoice, so the job did not run. "
                f"{credited} are now your balance.")
    if result is PaymentVerdict.NOT_DUE:
        return (f"This job needed no payment (it was free or paid from your balance). "
                f"Your payment is not lost: {credited} are now your balance.")
    if result is PaymentVerdict.TERMS_CHANGED:
        return (f"The free share promised for this job is no longer available, so it did not "
                f"run. {sats(outcome.refund_msat)} are waiting for you as a refund.")
    return None


class SettlementProcessor:
    """See the module docstring."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        on_credit: Callable[[Applied], Awaitable[None]] | None = None,
        expiry_grace_s: int = DEFAULT_EXPIRY_GRACE_S,
    ) -> None:
        self._ledger = ledger
        self._on_credit = on_credit
        self._grace = expiry_grace_s

    async def apply(self, settlement: Settlement) -> Applied | None:
        payment_hash = settlement.payment_hash
        amount = settlement.amount_msat
        if amount <= 0:
            log.error("settlement with a non-positive amount ignored: %s", payment_hash)
            return None
        key = payment_key(payment_hash)
        try:
            outcome = await self._ledger.confirm_payment(payment_hash, amount, key)
        except UnknownJob:
            return await self._topup(settlement, conflict=False)
        except IdempotencyConflict:  # the key may hold a top-up payment: a repeat of it
            return await self._topup(settlement, conflict=True)
        except LedgerError as exc:
            log.error("settlement %s not applied: %s", payment_hash, type(exc).__name__)
            return None
        job = await self._ledger.job(outcome.job_id)
        return await self._after(
            Applied(payment_hash, job.pubkey, outcome.amount_msat, outcome,
                    outcome.credited_balance_msat)
        )

    async def _topup(self, settlement: Settlement, *, conflict: bool) -> Applied | None:
        payment_hash = settlement.payment_hash
        try:
            paid = await self._ledger.confirm_topup(
                payment_hash, settlement.amount_msat, payment_key(payment_hash)
            )
        except UnknownTopup:
            if conflict:
                log.error("settlement %s not applied: IdempotencyConflict", payment_hash)
                return None
            log.error("money received for an unknown invoice %s (%d msat): nothing credited",
                      payment_hash, settlement.amount_msat)
            return None
        except LedgerError as exc:
            log.error("top-up %s not applied: %s", payment_hash, type(exc).__name__)
            return None
        return await self._after(
            Applied(payment_hash, paid.pubkey, paid.amount_msat, paid,
                    paid.credited_balance_msat)
        )

    async def _after(self, applied: Applied) -> Applied:
        if self._on_credit is not None:
            await self._on_credit(applied)
        return applied

    async def credited_since(
        self, since: int, after_transfer: int = 0
    ) -> list[tuple[int, Applied]]:
        """Every payment the ledger credited (all or partly) to a balance at or after
        ``since`` by a transfer whose id is above ``after_transfer``, by a settlement or a
        zap, oldest first: ``(that transfer's id, the payment as Applied)``. The agent's sweep
        tells the payers whose notice was never stored."""
        return [
            (c.transfer_id, Applied(c.payment_hash, c.pubkey, c.outcome.amount_msat, c.outcome,
                                    c.outcome.credited_balance_msat))
            for c in await self._ledger.credited_payments(since, after_transfer)
        ]

    async def run(self, source: SettlementSource) -> None:
        async for settlement in source.settlements():
            await self.apply(settlement)

    async def poll(
        self, wallet: Wallet, payment_hashes: Iterable[str] | None = None
    ) -> list[Applied]:
        """Look up ``payment_hashes`` (default: every invoice the ledger holds open) and apply
        the settled ones; without explicit hashes, also expire what can no longer be paid."""
        if payment_hashes is not None:
            return [a for h in payment_hashes if (a := await self._poll_one(wallet, h)) is not None]
        applied: list[Applied] = []
        for invoice in await self._ledger.open_invoices():
            try:
                status = await wallet.lookup_invoice(invoice.payment_hash)
            except WalletRefused as exc:  # e.g. the wallet does not know it (another wallet's)
                log.warning("lookup of %s refused (%s)", invoice.payment_hash, exc.code)
                if self._past_grace(invoice):
                    await self._expire(invoice)
                continue
            except WalletError as exc:
                log.warning("lookup of %s failed (%s)", invoice.payment_hash, type(exc).__name__)
                continue
            if status.state is InvoiceState.SETTLED:
                done = await self._apply_status(status)
                if done is not None:
                    applied.append(done)
            elif self._can_no_longer_be_paid(invoice, status):
                await self._expire(invoice)
        return applied

    async def _lookup(self, wallet: Wallet, payment_hash: str) -> InvoiceStatus | None:
        try:
            return await wallet.lookup_invoice(payment_hash)
        except WalletError as exc:
            log.warning("lookup of %s failed (%s)", payment_hash, type(exc).__name__)
            return None

    async def _poll_one(self, wallet: Wallet, payment_hash: str) -> Applied | None:
        status = await self._lookup(wallet, payment_hash)
        if status is None or status.state is not InvoiceState.SETTLED:
            return None
        return await self._apply_status(status)

    async def _apply_status(self, status: InvoiceStatus) -> Applied | None:
        return await self.apply(
            Settlement(status.payment_hash, status.amount_msat, status.preimage,
                       status.settled_at or 0)
        )

    def _can_no_longer_be_paid(self, invoice: OpenInvoice, status: InvoiceStatus) -> bool:
        if status.state in (InvoiceState.EXPIRED, InvoiceState.FAILED):
            return True
        return self._past_grace(invoice)

    def _past_grace(self, invoice: OpenInvoice) -> bool:
        return self._ledger.clock() > invoice.expires_at + self._grace

    async def _expire(self, invoice: OpenInvoice) -> None:
        try:
            if invoice.kind is InvoiceKind.TOPUP:
                await self._ledger.expire_topup(invoice.payment_hash)
            else:
                assert invoice.job_id is not None
                await self._ledger.expire_job(invoice.job_id)
        except IllegalTransition:  # paid meanwhile (another path applied it): nothing to expire
            return
        except LedgerError as exc:
            log.error("invoice %s not expired: %s", invoice.payment_hash, type(exc).__name__)
            return
        log.info("%s invoice %s expired unpaid", invoice.kind.value, invoice.payment_hash)
