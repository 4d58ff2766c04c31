"""Expected outcomes of ledger operations, as values (frozen dataclasses)."""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from enum import StrEnum
from typing import Any, Self, get_type_hints

from storage.lifecycle import JobState, PayoutState, RefundState, TopupState


class Serve(StrEnum):
    FREE = "free"  # pool reserved now, nothing to pay
    SESSION = "session"  # the estimate held from the prepaid balance now; pool share advisory
    PARTIAL = "partial"  # pool advisory share, asker pays work_amount_msat
    GATE = "gate"  # asker pays the whole estimate


class Reason(StrEnum):
    """Why a decision is what it is (the first limit that bound it)."""

    COVERED = "covered"  # pool and allowance cover the whole estimate
    POOL_SHORT = "pool_short"  # the pool has less than the estimate (maybe nothing)
    ALLOWANCE_SHORT = "allowance_short"  # the pubkey's free msat for today is (partly) used
    JOBS_LIMIT = "jobs_limit"  # the pubkey used today's subsidised jobs
    POOL_CAP = "pool_cap"  # the pool's global daily cap is (partly) used
    PAID_ONLY = "paid_only"  # the request may not be subsidised (decide(..., subsidy=False))


class PaymentVerdict(StrEnum):
    """What a payment did. Only PAID and OVERPAID let the job's work start.

    - PAID: paid in time, at least the work amount and at most the invoice amount (the work
      amount in whole sats): all of it is escrowed (settlement refunds what is not charged).
    - OVERPAID: paid in time, more than the invoice amount: that much is escrowed, the excess
      became the payer's balance.
    - LATE: paid after the invoice expired, or for a job that ended unpaid: all of it became
      balance.
    - DUPLICATE: the job was already paid: all of it became balance.
    - UNDERPAID: less than the work amount: all of it became balance (the job still awaits
      payment).
    - NOT_DUE: a free job or a session takes no payment: all of it became balance.
    - TERMS_CHANGED: a partial job whose pool share or daily allowance no longer covers the
      grant: the job failed and the whole payment is given back: its whole sats a pending
      refund, its sub-sat rest (and any excess) balance.
    """

    PAID = "paid"
    OVERPAID = "overpaid"
    LATE = "late"
    DUPLICATE = "duplicate"
    UNDERPAID = "underpaid"
    NOT_DUE = "not_due"
    TERMS_CHANGED = "terms_changed"


class TopupResult(StrEnum):
    """What a payment to a top-up invoice did. In every case all of it became balance.

    - CREDITED: paid while the invoice was open (any amount: what arrived is credited).
    - LATE: paid after the top-up expired.
    - DUPLICATE: the top-up was already paid (under another payment key).
    """

    CREDITED = "credited"
    LATE = "late"
    DUPLICATE = "duplicate"


class InvoiceKind(StrEnum):
    JOB = "job"
    TOPUP = "topup"


class _Value:
    """JSON round trip for the operations table (a repeated key returns the stored result)."""

    def to_json(self) -> str:
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        return json.dumps(values, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Self:
        raw: dict[str, Any] = json.loads(text)
        hints = get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name not in raw and f.default is not MISSING:
                continue  # a field added since the result was stored: its default
            value = raw[f.name]
            hint = hints[f.name]
            if isinstance(hint, type) and issubclass(hint, StrEnum):
                value = hint(value)
            kwargs[f.name] = value
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class Decision(_Value):
    """What ``decide`` chose (``reason``: the limit that kept it from being free)."""

    job_id: str
    pubkey: str
    serve: Serve
    reason: Reason
    estimate_msat: int
    absorb_msat: int  # subsidy: reserved now (free) or advisory (session, partial); 0 for gate
    work_amount_msat: int  # what the asker pays if the subsidy holds: estimate - absorb
    hold_msat: int  # session: held from the balance now (the estimate); 0 otherwise


@dataclass(frozen=True, slots=True)
class PartialGrant(_Value):
    job_id: str
    granted: bool  # False: the job failed, what was paid is given back
    absorb_msat: int
    refund_msat: int  # pending refund (whole sats)
    credited_balance_msat: int  # the sub-sat rest of what was paid: the asker's balance


@dataclass(frozen=True, slots=True)
class PaymentOutcome(_Value):
    job_id: str
    result: PaymentVerdict
    amount_msat: int
    job_paid: bool  # the job proceeds (work may start)
    credited_balance_msat: int  # what became the payer's balance
    refund_msat: int  # pending refund created (TERMS_CHANGED)


@dataclass(frozen=True, slots=True)
class Completion(_Value):
    """What ``settle`` did with a job's actual cost (every serve)."""

    job_id: str
    serve: Serve
    actual_msat: int
    charged_msat: int  # revenue: paid from escrow (partial, gate) or the balance (session)
    absorbed_msat: int  # the pool's share (journal and daily counter show this, not the estimate)
    refund_msat: int  # pending refund created, whole sats (partial, gate; 0 for none)
    credited_balance_msat: int  # the sub-sat rest of what was given back: the asker's balance
    released_msat: int  # reservation returned to the pool (free, partial) or hold to the balance


@dataclass(frozen=True, slots=True)
class Failure(_Value):
    job_id: str
    released_msat: int  # pool reservation or balance hold given back
    refund_msat: int  # pending refund created: what was paid, in whole sats
    credited_balance_msat: int  # the sub-sat rest of what was paid: the asker's balance


@dataclass(frozen=True, slots=True)
class Credit(_Value):
    key: str
    account: str
    amount_msat: int
    note: str = ""  # what the funder said with it (a zap's comment): opaque text


@dataclass(frozen=True, slots=True)
class PoolFunding:
    """One zap that funded the pool (``Ledger.recent_zaps``, newest first)."""

    funder: str | None  # the zapper's pubkey
    amount_msat: int
    note: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Refund(_Value):
    job_id: str
    pubkey: str
    amount_msat: int
    state: RefundState


@dataclass(frozen=True, slots=True)
class Payout(_Value):
    payout_id: int
    job_id: str
    pubkey: str
    amount_msat: int
    destination: str
    state: PayoutState
    preimage: str | None
    fee_msat: int | None
    reason: str | None
    remainder_msat: int = 0  # the part of the refund not sent: the asker's balance once paid


@dataclass(frozen=True, slots=True)
class PoolStatus:
    available_msat: int  # spendable now
    reserved_msat: int  # held by running free jobs and paid partial jobs
    spent_today_msat: int
    daily_cap_msat: int | None
    total_in_msat: int
    total_spent_msat: int
    zap_count: int
    zapper_count: int
    jobs_today: int  # jobs the pool paid for, in whole or part, today (UTC)


@dataclass(frozen=True, slots=True)
class Allowance:
    pubkey: str
    day: str
    free_msat_left: int
    free_jobs_left: int


@dataclass(frozen=True, slots=True)
class BalanceView:
    pubkey: str
    available_msat: int
    held_msat: int
    pending_refund_msat: int


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    pubkey: str
    serve: Serve
    state: JobState
    estimate_msat: int
    absorb_msat: int
    work_amount_msat: int
    reserved_msat: int
    paid_msat: int
    actual_msat: int | None
    absorbed_msat: int | None
    charged_msat: int | None
    invoice_hash: str | None
    invoice_msat: int | None
    invoice_expires_at: int | None
    refund_state: RefundState
    refund_msat: int
    refund_ref: str | None
    error: str | None
    created_at: int
    updated_at: int
    reserve_transfer: int | None  # pending pool reservation (free and paid partial jobs)
    reserve_day: str | None  # the UTC day its subsidy is counted on
    hold_transfer: int | None  # pending balance hold (sessions)


@dataclass(frozen=True, slots=True)
class TopupRecord:
    """A top-up invoice: ``pubkey`` buys ``amount_msat`` of balance with ``payment_hash``."""

    payment_hash: str
    pubkey: str
    amount_msat: int
    expires_at: int
    state: TopupState
    paid_msat: int  # what its payments credited in total (0 while open or expired unpaid)
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class TopupPayment(_Value):
    """A payment for a top-up invoice: ``credited_balance_msat`` (= ``amount_msat``) went to
    ``pubkey``'s balance."""

    payment_hash: str
    pubkey: str
    result: TopupResult
    amount_msat: int
    invoice_msat: int
    credited_balance_msat: int


@dataclass(frozen=True, slots=True)
class CreditedPayment:
    """An incoming payment that became (partly) a balance, as the ledger recorded it: the id of
    that balance transfer (they only grow), its idempotency key (``pay:<hash>`` or
    ``zap:<hash>``), the balance's owner, when, and the operation's stored outcome."""

    transfer_id: int
    key: str
    pubkey: str
    credited_at: int
    outcome: PaymentOutcome | TopupPayment

    @property
    def payment_hash(self) -> str:
        return self.key.partition(":")[2]


@dataclass(frozen=True, slots=True)
class OpenInvoice:
    """An invoice still awaiting payment: a job's (``job_id``) or a top-up (``job_id`` None)."""

    payment_hash: str
    kind: InvoiceKind
    pubkey: str
    amount_msat: int
    expires_at: int
    job_id: str | None
