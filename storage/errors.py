"""The one exception hierarchy of ``storage``.

Expected outcomes are *values* (``Decision``, ``Completion``, ``PaymentOutcome``...), never
exceptions: "pool empty", "limit reached", "invoice expired", "paid twice" are results the caller
handles. An exception from ``storage`` means the caller asked for something that cannot be done,
and in every case **nothing was written**:

``LedgerError``                    base class; catch it to handle any of the below
├── ``InvalidInput``               a malformed argument (also a ``ValueError``)
│   └── ``InvalidAmount``          an amount that is not a positive ``int`` in range
├── ``NotFound``                   (also a ``LookupError``)
│   ├── ``UnknownJob``             no job with that id or payment hash
│   ├── ``UnknownPayout``          no payout with that id
│   └── ``UnknownTopup``           no top-up invoice with that payment hash
├── ``IllegalTransition``          a job or refund is not in a state that allows the operation
├── ``InsufficientFunds``          a transfer would take an account below zero (counting pending)
├── ``IdempotencyConflict``        an idempotency key reused for a different operation or arguments
├── ``TargetNotEmpty``             a ledger copy's target already holds a ledger
└── ``StorageFailure``             the database itself failed or is unusable
    ├── ``SchemaTooNew``           the file was written by a newer version of this code
    └── ``DatabaseClosed``         the ``Database`` was closed

Messages name job ids, accounts and amounts, never secrets.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error raised by ``storage``."""


class InvalidInput(LedgerError, ValueError):
    """A malformed argument: empty id, unknown enum value, wrong type."""


class InvalidAmount(InvalidInput):
    """An amount that is not a positive integer number of msat within range."""


class NotFound(LedgerError, LookupError):
    """The referenced record does not exist."""


class UnknownJob(NotFound):
    """No job with that id (or invoice payment hash)."""


class UnknownPayout(NotFound):
    """No payout with that id."""


class UnknownTopup(NotFound):
    """No top-up invoice with that payment hash."""


class IllegalTransition(LedgerError):
    """The job or refund is in a state that does not allow this operation."""


class InsufficientFunds(LedgerError):
    """A transfer would take a non-negative account below zero, counting pending debits."""


class IdempotencyConflict(LedgerError):
    """An idempotency key was already used for a different operation or different arguments."""


class TargetNotEmpty(LedgerError):
    """A ledger is copied only into an empty database."""


class StorageFailure(LedgerError):
    """The database failed (I/O error, lock timeout) or cannot be used."""


class SchemaTooNew(StorageFailure):
    """The database schema version is newer than this code knows."""


class DatabaseClosed(StorageFailure):
    """The ``Database`` was closed."""
