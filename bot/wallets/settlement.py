"""Settlements from a wallet → payment confirmations in the ledger, exactly once per payment hash.

``SettlementProcessor(ledger, topup_owner=None, on_credit=None)``:

- ``apply(settlement)`` → :class:`Applied` or ``None``. A settlement for a job invoice becomes
  ``ledger.confirm_payment(payment_hash, amount_msat, key=payment_key(hash))``; the ledger decides
  what the money does: paid in time and exact → the job proceeds; **overpaid** → the excess
  becomes the payer's balance; **late** (after the job expired), **double** (job already paid)
  or **underpaid** → all of it becomes the payer's balance; never lost. The same key makes any
  repeat of the same payment hash (websocket and webhook repeats, polling, a restart) a no-op
  returning the first outcome. A payment hash with no job is offered to ``topup_owner``
  (``async (payment_hash) -> pubkey | None``): a known top-up becomes that pubkey's balance
  (key ``topup:<hash>``); an unknown one is logged at error level and returns ``None``.
- ``run(source)`` consumes a :class:`~bot.wallets.base.SettlementSource` forever.
- ``poll(wallet, payment_hashes)`` is the fallback where nothing is pushed (or the push channel
  dropped): each hash is looked up and settled ones are applied.
- ``on_credit`` (``async (Applied) -> None``) is awaited once per payment hash, ever (claimed
  durably through ``storage.Intake`` as ``settled:<hash>``), so the agent can tell the payer what
  happened: :func:`payer_message` renders the text.

:func:`payment_key` is the idempotency key every intake path must use for a payment hash
(``pay:<hash>``), so that a payment seen by two paths is still counted once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

from bot.wallets.base import (
    InvoiceState,
    Settlement,
    SettlementSource,
    Wallet,
    WalletError,
)
from storage import Intake, Ledger, LedgerError, PaymentOutcome, PaymentResult, UnknownJob

log = logging.getLogger(__name__)

TopupOwner = Callable[[str], Awaitable[str | None]]


def payment_key(payment_hash: str) -> str:
    """The ledger idempotency key of an incoming payment."""
    return f"pay:{payment_hash}"


def topup_key(payment_hash: str) -> str:
    return f"topup:{payment_hash}"


@dataclass(frozen=True, slots=True)
class Applied:
    """What one settlement did. ``outcome`` is None for a top-up (all of it is balance)."""

    payment_hash: str
    pubkey: str
    amount_msat: int
    outcome: PaymentOutcome | None
    credited_balance_msat: int
    first_time: bool


def _sats(msat: int) -> str:
    sats, rest = divmod(msat, 1000)
    return f"{sats} sats" if not rest else f"{msat / 1000:.3f} sats"


def payer_message(applied: Applied) -> str | None:
    """What to tell the payer, or ``None`` when the normal job flow says it already."""
    outcome = applied.outcome
    credited = _sats(applied.credited_balance_msat)
    if outcome is None:
        return f"Top-up received: {credited} added to your balance."
    result = outcome.result
    if result is PaymentResult.PAID:
        return None
    if result is PaymentResult.OVERPAID:
        return f"Payment received. You paid more than the invoice: {credited} went to your balance."
    if result is PaymentResult.LATE:
        return (f"Your payment arrived after the quote expired, so the job did not run. "
                f"It is not lost: {credited} are now your balance.")
    if result is PaymentResult.DUPLICATE:
        return (f"This job was already paid. Your extra payment is not lost: {credited} are "
                f"now your balance.")
    if result is PaymentResult.UNDERPAID:
        return (f"Your payment was less than the invoice, so the job did not run. "
                f"{credited} are now your balance.")
    if result is PaymentResult.TERMS_CHANGED:
        return (f"The free share promised for this job is no longer available, so it did not "
                f"run. {_sats(outcome.refund_msat)} are waiting for you as a refund.")
    return None


class SettlementProcessor:
    """See the module docstring."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        topup_owner: TopupOwner | None = None,
        on_credit: Callable[[Applied], Awaitable[None]] | None = None,
    ) -> None:
        self._ledger = ledger
        self._topup_owner = topup_owner
        self._on_credit = on_credit
        self._intake = Intake(ledger.db)

    async def apply(self, settlement: Settlement) -> Applied | None:
        payment_hash = settlement.payment_hash
        if settlement.amount_msat <= 0:
            log.error("settlement with a non-positive amount ignored: %s", payment_hash)
            return None
        try:
            outcome = await self._ledger.confirm_payment(
                payment_hash, settlement.amount_msat, payment_key(payment_hash)
            )
        except UnknownJob:
            return await self._topup(settlement)
        except LedgerError as exc:
            log.error("settlement %s not applied: %s", payment_hash, type(exc).__name__)
            return None
        job = await self._ledger.job(outcome.job_id)
        return await self._after(
            Applied(payment_hash, job.pubkey, outcome.amount_msat, outcome,
                    outcome.credited_balance_msat, first_time=False)
        )

    async def _topup(self, settlement: Settlement) -> Applied | None:
        payment_hash = settlement.payment_hash
        owner = await self._topup_owner(payment_hash) if self._topup_owner else None
        if owner is None:
            log.error("money received for an unknown invoice %s (%d msat): nothing credited",
                      payment_hash, settlement.amount_msat)
            return None
        try:
            await self._ledger.credit_balance(owner, settlement.amount_msat,
                                              topup_key(payment_hash), reason="topup")
        except LedgerError as exc:
            log.error("top-up %s not applied: %s", payment_hash, type(exc).__name__)
            return None
        return await self._after(
            Applied(payment_hash, owner, settlement.amount_msat, None, settlement.amount_msat,
                    first_time=False)
        )

    async def _after(self, applied: Applied) -> Applied:
        """Mark the first application of a payment hash (durably) and tell ``on_credit``."""
        first = await self._intake.claim(f"settled:{applied.payment_hash}")
        applied = replace(applied, first_time=first)
        if first and self._on_credit is not None:
            await self._on_credit(applied)
        return applied

    async def run(self, source: SettlementSource) -> None:
        async for settlement in source.settlements():
            await self.apply(settlement)

    async def poll(self, wallet: Wallet, payment_hashes: Iterable[str]) -> list[Applied]:
        applied: list[Applied] = []
        for payment_hash in payment_hashes:
            try:
                status = await wallet.lookup_invoice(payment_hash)
            except WalletError as exc:
                log.warning("lookup of %s failed (%s)", payment_hash, type(exc).__name__)
                continue
            if status.state is not InvoiceState.SETTLED:
                continue
            done = await self.apply(
                Settlement(payment_hash, status.amount_msat, status.preimage,
                           status.settled_at or 0)
            )
            if done is not None:
                applied.append(done)
        return applied
