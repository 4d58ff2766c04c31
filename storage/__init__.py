"""The money and the jobs, persisted. Imports nothing from ``bot``.

Open with ``db = await Database.open(path)`` (or a ``postgresql://`` URL); drive money with
``Ledger(db, limits)``, intake with ``Intake(db)``; audit with ``await check(db)``. Errors: see
``storage.errors``.
"""

from storage.amounts import whole_sats_up
from storage.check import CheckReport, check
from storage.database import Database
from storage.errors import (
    DatabaseClosed,
    IdempotencyConflict,
    IllegalTransition,
    InsufficientFunds,
    InvalidAmount,
    InvalidInput,
    LedgerError,
    NotFound,
    SchemaTooNew,
    StorageFailure,
    TargetNotEmpty,
    UnknownJob,
    UnknownPayout,
    UnknownTopup,
)
from storage.intake import Intake
from storage.leases import Replica
from storage.ledger import Ledger
from storage.ledger_copy import copy_ledger
from storage.lifecycle import (
    JobState,
    PayoutState,
    RefundState,
    RequestOp,
    RequestState,
    TopupState,
)
from storage.limits import Clock, Limits, system_clock, utc_day
from storage.outbox import Outbox, OutboxItem, OutgoingEvent
from storage.outcomes import (
    Allowance,
    BalanceView,
    Completion,
    Credit,
    CreditedPayment,
    Decision,
    Failure,
    InvoiceKind,
    JobRecord,
    OpenInvoice,
    PartialGrant,
    PaymentOutcome,
    PaymentVerdict,
    Payout,
    PoolFunding,
    PoolStatus,
    Reason,
    Refund,
    Serve,
    TopupPayment,
    TopupRecord,
    TopupResult,
)
from storage.requests import NewRequest, RequestRecord

__all__ = [
    "Allowance",
    "BalanceView",
    "CheckReport",
    "Clock",
    "Completion",
    "Credit",
    "CreditedPayment",
    "Database",
    "DatabaseClosed",
    "Decision",
    "Failure",
    "IdempotencyConflict",
    "IllegalTransition",
    "InsufficientFunds",
    "Intake",
    "InvalidAmount",
    "InvalidInput",
    "InvoiceKind",
    "JobRecord",
    "JobState",
    "Ledger",
    "LedgerError",
    "Limits",
    "NewRequest",
    "NotFound",
    "OpenInvoice",
    "Outbox",
    "OutboxItem",
    "OutgoingEvent",
    "PartialGrant",
    "PaymentOutcome",
    "PaymentVerdict",
    "Payout",
    "PayoutState",
    "PoolFunding",
    "PoolStatus",
    "Reason",
    "Refund",
    "RefundState",
    "Replica",
    "RequestOp",
    "RequestRecord",
    "RequestState",
    "SchemaTooNew",
    "Serve",
    "StorageFailure",
    "TargetNotEmpty",
    "TopupPayment",
    "TopupRecord",
    "TopupResult",
    "TopupState",
    "UnknownJob",
    "UnknownPayout",
    "UnknownTopup",
    "check",
    "copy_ledger",
    "system_clock",
    "utc_day",
    "whole_sats_up",
]
