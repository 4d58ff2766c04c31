"""The dev wallet: an in-process Lightning wallet for local runs and tests. NOT REAL MONEY.

It issues well-formed bolt11 strings (regtest prefix ``lnbcrt`` by default) signed with a
throwaway node key, and settles them only when told to (:meth:`DevWallet.settle`). Every
description, log line and result reason it produces says it is not real money.

Several dev wallets may share one :class:`DevNetwork`, so that one can pay the invoices of
another (an asker's dev wallet paying the agent's, the agent refunding an asker). A dev wallet
cannot pay anything else: foreign invoices fail with a clear reason.

The configuration refuses it unless explicitly allowed (``bot.wallets.config.WalletConfig``):
``allow_dev = true`` in ``[wallet]``, the ``--allow-dev-wallet`` flag
(:data:`ALLOW_DEV_WALLET_FLAG`) or the ``TIMMY_ALLOW_DEV_WALLET=1`` environment variable
(:data:`ALLOW_DEV_WALLET_ENV`), the last two read by :func:`dev_wallet_allowed`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from bot.wallets.base import (
    DEFAULT_INVOICE_EXPIRY_S,
    NETWORKS,
    Invoice,
    InvoiceState,
    InvoiceStatus,
    PaymentResult,
    PaymentState,
    Settlement,
    WalletRefused,
    check_invoice_request,
)
from bot.wallets.bolt11 import decode_invoice, encode_invoice

log = logging.getLogger(__name__)

NOT_REAL_MONEY = "dev wallet: NOT REAL MONEY"
ALLOW_DEV_WALLET_FLAG = "--allow-dev-wallet"
ALLOW_DEV_WALLET_ENV = "TIMMY_ALLOW_DEV_WALLET"


def dev_wallet_allowed(flag: bool, environ: Mapping[str, str]) -> bool:
    """True when the operator allowed the dev wallet by flag or environment (``1``/``true``)."""
    return flag or environ.get(ALLOW_DEV_WALLET_ENV, "").strip().lower() in {"1", "true", "yes"}


@dataclass
class _DevInvoice:
    owner: DevWallet
    invoice: Invoice
    preimage: str
    state: InvoiceState = InvoiceState.PENDING
    received_msat: int = 0
    settled_at: int | None = None


@dataclass
class DevNetwork:
    """Invoices of every dev wallet sharing this network, by payment hash."""

    invoices: dict[str, _DevInvoice] = field(default_factory=dict)


class DevWallet:
    """In-process wallet (module docstring); a ``Wallet`` and a ``SettlementSource``."""

    def __init__(
        self,
        *,
        network: str = "bcrt",
        balance_msat: int = 0,
        dev_network: DevNetwork | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if network not in NETWORKS:
            raise WalletRefused(f"unknown network for the {NOT_REAL_MONEY}", code="bad_network")
        self._network = network
        self._balance_msat = balance_msat
        self._net = dev_network if dev_network is not None else DevNetwork()
        self._clock = clock
        self._node_key = os.urandom(32).hex()
        self._outgoing: dict[str, PaymentResult] = {}
        self._subscribers: list[asyncio.Queue[Settlement]] = []
        log.warning("%s: invoices from this wallet can be settled only by command", NOT_REAL_MONEY)

    @property
    def name(self) -> str:
        return "dev"

    @property
    def is_real_money(self) -> bool:
        return False

    @property
    def network(self) -> str:
        return self._network

    def _now(self) -> int:
        return int(self._clock())

    async def make_invoice(
        self,
        amount_msat: int,
        *,
        description: str = "",
        description_hash: bytes | None = None,
        expiry_s: int = DEFAULT_INVOICE_EXPIRY_S,
    ) -> Invoice:
        check_invoice_request(amount_msat, description, description_hash, expiry_s)
        preimage = os.urandom(32)
        payment_hash = hashlib.sha256(preimage).hexdigest()
        now = self._now()
        text = f"[{NOT_REAL_MONEY}] {description}".strip()
        bolt11 = encode_invoice(
            network=self._network,
            amount_msat=amount_msat,
            payment_hash=payment_hash,
            payment_secret=os.urandom(32).hex(),
            created_at=now,
            expiry_s=expiry_s,
            node_key_hex=self._node_key,
            description=None if description_hash is not None else text,
            description_hash=description_hash.hex() if description_hash is not None else None,
        )
        invoice = Invoice(
            bolt11=bolt11,
            payment_hash=payment_hash,
            amount_msat=amount_msat,
            created_at=now,
            expires_at=now + expiry_s,
        )
        self._net.invoices[payment_hash] = _DevInvoice(
            owner=self, invoice=invoice, preimage=preimage.hex()
        )
        return invoice

    def _own(self, payment_hash: str) -> _DevInvoice | None:
        record = self._net.invoices.get(payment_hash)
        return record if record is not None and record.owner is self else None

    async def lookup_invoice(self, payment_hash: str) -> InvoiceStatus:
        record = self._own(payment_hash)
        if record is None:
            raise WalletRefused(f"{NOT_REAL_MONEY}: unknown invoice", code="not_found")
        state = record.state
        if state is InvoiceState.PENDING and self._now() >= record.invoice.expires_at:
            state = InvoiceState.EXPIRED
        settled = state is InvoiceState.SETTLED
        return InvoiceStatus(
            payment_hash=payment_hash,
            state=state,
            amount_msat=record.received_msat if settled else record.invoice.amount_msat,
            preimage=record.preimage if settled else None,
            settled_at=record.settled_at,
        )

    def settle(self, payment_hash: str, amount_msat: int | None = None) -> Settlement:
        """Mark one of this wallet's invoices paid (``amount_msat`` defaults to the invoice
        amount; more is an overpayment) and push the settlement to subscribers. Settling an
        invoice again delivers the same settlement again (a repeat, as real backends do)."""
        record = self._own(payment_hash)
        if record is None:
            raise WalletRefused(f"{NOT_REAL_MONEY}: unknown invoice", code="not_found")
        if record.state is not InvoiceState.SETTLED:
            received = record.invoice.amount_msat if amount_msat is None else amount_msat
            if received < record.invoice.amount_msat:
                raise WalletRefused(
                    f"{NOT_REAL_MONEY}: cannot settle for less than the invoice",
                    code="bad_amount",
                )
            record.state = InvoiceState.SETTLED
            record.received_msat = received
            record.settled_at = self._now()
            self._balance_msat += received
            log.info("%s: settled an invoice of %d msat", NOT_REAL_MONEY, received)
        settlement = Settlement(
            payment_hash=payment_hash,
            amount_msat=record.received_msat,
            preimage=record.preimage,
            settled_at=record.settled_at or self._now(),
        )
        for queue in self._subscribers:
            queue.put_nowait(settlement)
        return settlement

    async def pay_invoice(self, bolt11: str, *, max_fee_msat: int) -> PaymentResult:
        decoded = decode_invoice(bolt11)
        payment_hash = decoded.payment_hash
        previous = self._outgoing.get(payment_hash)
        if previous is not None and previous.state is PaymentState.SUCCEEDED:
            return PaymentResult(
                payment_hash, PaymentState.FAILED, reason=f"{NOT_REAL_MONEY}: already paid"
            )
        record = self._net.invoices.get(payment_hash)
        reason: str | None = None
        if decoded.network != self._network:
            reason = "invoice is for another network"
        elif record is None:
            reason = "can only pay invoices of dev wallets on the same dev network"
        elif record.owner is self:
            reason = "cannot pay its own invoice"
        elif decoded.amount_msat is None:
            reason = "invoice has no amount"
        elif decoded.is_expired(self._now()):
            reason = "invoice has expired"
        elif record.state is not InvoiceState.PENDING:
            reason = "invoice is already paid"
        elif self._balance_msat < decoded.amount_msat:
            reason = "insufficient balance"
        if reason is not None or record is None or decoded.amount_msat is None:
            result = PaymentResult(
                payment_hash, PaymentState.FAILED, reason=f"{NOT_REAL_MONEY}: {reason}"
            )
            self._outgoing[payment_hash] = result
            return result
        self._balance_msat -= decoded.amount_msat
        record.owner.settle(payment_hash)
        result = PaymentResult(
            payment_hash, PaymentState.SUCCEEDED, preimage=record.preimage, fee_msat=0,
            reason=NOT_REAL_MONEY,
        )
        self._outgoing[payment_hash] = result
        return result

    async def lookup_payment(self, payment_hash: str) -> PaymentResult:
        found = self._outgoing.get(payment_hash)
        if found is None:
            return PaymentResult(payment_hash, PaymentState.NOT_FOUND, reason=NOT_REAL_MONEY)
        return found

    async def balance_msat(self) -> int:
        return self._balance_msat

    def settlements(self) -> AsyncIterator[Settlement]:
        """Settlements from now on (subscribed at once, before the first ``anext``)."""
        queue: asyncio.Queue[Settlement] = asyncio.Queue()
        self._subscribers.append(queue)
        return _Subscription(queue, self._subscribers)

    async def aclose(self) -> None:
        self._subscribers.clear()



class _Subscription:
    def __init__(
        self, queue: asyncio.Queue[Settlement], registry: list[asyncio.Queue[Settlement]]
    ) -> None:
        self._queue = queue
        self._registry = registry

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> Settlement:
        return await self._queue.get()

    async def aclose(self) -> None:
        if self._queue in self._registry:
            self._registry.remove(self._queue)
