"""The money and the jobs, persisted. Imports nothing from ``bot``.

Open with ``db = await Database.open(path)``; drive money with ``Ledger(db, limits)``, intake with
``Intake(db)``; audit with ``await check(db)``. Errors: see ``storage.errors``.
"""

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
    UnknownJob,
    UnknownPayout,
)
from storage.intake import Intake
from storage.ledger import Ledger
from storage.limits import Clock, Limits, system_clock, utc_day
from storage.outcomes import (
    Allowance,
    BalanceView,
    Credit,
    Decision,
    Failure,
    GrantOutcome,
    JobRecord,
    PartialGrant,
    PaymentOutcome,
    PaymentResult,
    Payout,
    PayoutState,
    PoolStatus,
    Reason,
    Refund,
    RefundState,
    Serve,
    SessionHold,
    SessionSettlement,
    Settlement,
)

__all__ = [
    "Allowance",
    "BalanceView",
    "CheckReport",
    "Clock",
    "Credit",
    "Database",
    "DatabaseClosed",
    "Decision",
    "Failure",
    "GrantOutcome",
    "IdempotencyConflict",
    "IllegalTransition",
    "InsufficientFunds",
    "Intake",
    "InvalidAmount",
    "InvalidInput",
    "JobRecord",
    "Ledger",
    "LedgerError",
    "Limits",
    "NotFound",
    "PartialGrant",
    "PaymentOutcome",
    "PaymentResult",
    "Payout",
    "PayoutState",
    "PoolStatus",
    "Reason",
    "Refund",
    "RefundState",
    "SchemaTooNew",
    "Serve",
    "SessionHold",
    "SessionSettlement",
    "Settlement",
    "StorageFailure",
    "UnknownJob",
    "UnknownPayout",
    "check",
    "system_clock",
    "utc_day",
]
