"""The one wallet interface every Lightning backend implements, and its result types.

A backend (LNbits, NWC, Lightning address, the dev wallet) is any object satisfying
:class:`Wallet`:

- ``make_invoice(amount_msat, description=..., description_hash=..., expiry_s=...)`` →
  :class:`Invoice` (bolt11, payment hash, amount, expiry).
- ``lookup_invoice(payment_hash)`` → :class:`InvoiceStatus` whose ``state`` is one of
  :class:`InvoiceState` ``PENDING`` / ``SETTLED`` (with ``preimage`` and the received
  ``amount_msat``) / ``EXPIRED`` / ``FAILED``.
- ``pay_invoice(bolt11, max_fee_msat=...)`` → :class:`PaymentResult` whose ``state`` is one of
  :class:`PaymentState` ``SUCCEEDED`` (with ``preimage`` and ``fee_msat``) / ``FAILED`` (certainly
  not paid: safe to try again or elsewhere) / ``PENDING`` (in flight or the answer was late:
  *never* treat as failed, look it up later).
- ``lookup_payment(payment_hash)`` → :class:`PaymentResult` for an outgoing payment; state
  ``NOT_FOUND`` when the wallet never saw it (so a payout recorded before a crash but never sent
  can be sent safely).
- ``balance_msat()`` → int.
- ``aclose()`` releases what the backend opened itself (never an injected ``httpx.AsyncClient``).

A backend that can push settlements also satisfies :class:`SettlementSource`:
``settlements()`` is an async iterator of :class:`Settlement` values. It may deliver the same
payment hash more than once (webhook/websocket repeats, several relays); consumers deduplicate
by payment hash (``bot.agent.settlements`` does, through the ledger).

Money is integers in millisatoshis. Timestamps are Unix seconds (int).

Expected outcomes are values; exceptions are reserved for things the caller cannot plan around.
The one exception hierarchy::

    WalletError                  base of everything raised by bot.wallets
    ├── WalletUnavailable        the backend could not be reached or did not answer in time;
    │                            the outcome of the call is unknown (retry / look up later)
    ├── WalletProtocolError      the backend answered something malformed or unexpected
    ├── WalletRefused            the backend understood and refused (bad key, bad request,
    │                            unsupported amount); ``code`` holds its reason code
    ├── InvalidInvoice           a bolt11 string that does not decode or fails a check
    │                            (``bot.wallets.bolt11``)
    ├── LnurlError               an LNURL / lightning-address exchange failed
    │                            (``bot.wallets.lnurl``)
    └── WalletStartError         the configured wallet cannot be built or does not answer at
                                 start (``bot.wallets.factory``); ``setting`` names the key

Messages of these exceptions never contain keys, secrets or connection strings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

DEFAULT_INVOICE_EXPIRY_S = 600
"""Invoices expire after 10 minutes unless asked otherwise (SPEC §3)."""

NETWORKS = frozenset({"bc", "tb", "tbs", "bcrt"})
"""bolt11 currency prefixes: mainnet, testnet, signet, regtest."""


class WalletError(Exception):
    """Base of every exception raised by ``bot.wallets``."""


class WalletUnavailable(WalletError):
    """The backend could not be reached or did not answer in time; the outcome is unknown."""


class WalletProtocolError(WalletError):
    """The backend answered with something malformed or unexpected."""


class WalletRefused(WalletError):
    """The backend understood the request and refused it."""

    def __init__(self, message: str, code: str = "refused") -> None:
        super().__init__(message)
        self.code = code


class InvalidInvoice(WalletError):
    """A bolt11 string that does not decode, or fails a check (amount, network, expiry)."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


class LnurlError(WalletError):
    """An LNURL-pay / lightning-address exchange failed (unreachable, refused, or checks failed)."""

    def __init__(self, message: str, code: str = "lnurl") -> None:
        super().__init__(message)
        self.code = code


class WalletStartError(WalletError):
    """The configured wallet cannot be used: a secret is unreadable, or the backend does not
    answer or refuses its credentials at start. The message names the setting and the fix;
    ``setting`` is that setting (e.g. ``"[wallet.lnbits] url"``)."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True, slots=True)
class Invoice:
    """An invoice the wallet created for us to receive ``amount_msat``."""

    bolt11: str
    payment_hash: str
    amount_msat: int
    created_at: int
    expires_at: int


class InvoiceState(StrEnum):
    PENDING = "pending"
    SETTLED = "settled"
    EXPIRED = "expired"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class InvoiceStatus:
    """What the wallet knows about one incoming invoice.

    ``amount_msat`` is what was actually received when settled (it may exceed the invoice
    amount), else the invoiced amount (or 0 when the wallet does not report it).
    """

    payment_hash: str
    state: InvoiceState
    amount_msat: int
    preimage: str | None = None
    settled_at: int | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """An incoming payment the wallet saw settle. May be delivered more than once."""

    payment_hash: str
    amount_msat: int
    preimage: str | None
    settled_at: int


class PaymentState(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """The outcome of paying (or looking up) an outgoing payment.

    ``FAILED`` means certainly not paid. ``PENDING`` means in flight or unknown: the payment
    may still succeed, so it must be looked up later and never retried blindly. ``NOT_FOUND``
    (lookups only) means the wallet has no record of this payment hash.
    """

    payment_hash: str
    state: PaymentState
    preimage: str | None = None
    fee_msat: int | None = None
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.state is PaymentState.SUCCEEDED


@runtime_checkable
class Wallet(Protocol):
    """One Lightning backend. See the module docstring for the contract."""

    @property
    def name(self) -> str:
        """Short backend name for logs ("lnbits", "nwc", "dev", ...)."""
        ...

    @property
    def is_real_money(self) -> bool:
        """False only for the dev wallet."""
        ...

    @property
    def network(self) -> str:
        """The bolt11 currency prefix this wallet lives on ("bc", "tb", "tbs", "bcrt")."""
        ...

    async def make_invoice(
        self,
        amount_msat: int,
        *,
        description: str = "",
        description_hash: bytes | None = None,
        expiry_s: int = DEFAULT_INVOICE_EXPIRY_S,
    ) -> Invoice: ...

    async def lookup_invoice(self, payment_hash: str) -> InvoiceStatus: ...

    async def pay_invoice(self, bolt11: str, *, max_fee_msat: int) -> PaymentResult: ...

    async def lookup_payment(self, payment_hash: str) -> PaymentResult: ...

    async def balance_msat(self) -> int: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class SettlementSource(Protocol):
    """A backend that pushes settlements (websocket, notifications, webhooks)."""

    def settlements(self) -> AsyncIterator[Settlement]: ...


def check_invoice_request(
    amount_msat: int, description: str, description_hash: bytes | None, expiry_s: int
) -> None:
    """Shared argument checks for ``make_invoice``; raises :class:`WalletRefused`."""
    if isinstance(amount_msat, bool) or not isinstance(amount_msat, int) or amount_msat <= 0:
        raise WalletRefused("amount_msat must be a positive integer", code="bad_amount")
    if amount_msat > 21_000_000 * 100_000_000 * 1000:
        raise WalletRefused("amount_msat is larger than all bitcoin", code="bad_amount")
    if description_hash is not None and len(description_hash) != 32:
        raise WalletRefused("description_hash must be 32 bytes", code="bad_description")
    if description_hash is not None and description:
        raise WalletRefused(
            "give a description or a description hash, not both", code="bad_description"
        )
    if not isinstance(expiry_s, int) or expiry_s <= 0:
        raise WalletRefused("expiry_s must be a positive integer", code="bad_expiry")
