"""The receive-only Lightning-address backend: LNURL-pay (LUD-06/16) with NIP-57 and LUD-21.

The agent has no node and no wallet API, only a lightning address (``name@domain``) whose LNURL
service supports zaps. To invoice ``amount_msat`` it:

1. reads its own address's payRequest (cached by :class:`AgentAddress`; it must say
   ``allowsNostr`` and give a ``nostrPubkey``);
2. signs a zap request (kind 9734) to itself — ``p`` = the agent, ``amount``, ``lnurl``, the
   relays where the receipt should go, the description as content;
3. calls the callback with it; the bolt11 it gets back is checked by ``LnurlClient``: amount
   equal, description hash equal to ``sha256(zap request JSON)``, right network;
4. learns of payment from whichever comes first: the zap receipt (validated by
   ``bot.agent.zaps.ZapIntake`` and handed over with :meth:`receipt_seen`) or the LUD-21
   ``verify`` URL, polled every ``poll_interval_s`` (and asked directly by
   :meth:`lookup_invoice`). Each payment hash is reported once by this wallet; consumers still
   deduplicate.

Invoices and their verify URLs are kept in memory. After a restart, a receipt still settles an
invoice made before it (the zap request inside carries the agent's own signature, so it proves
the invoice was ours). ``lookup_invoice`` of an invoice no longer in memory asks the provider's
verify URL built from ``verify_url_template`` (e.g. ``https://host/lnurlp/verify/{payment_hash}``),
when one is configured: the LUD-21 answer's ``pr`` gives the invoice back (it must decode, carry
the payment hash asked about and be on the wallet's network), so its amount and expiry are known
again. Without a template, or when the provider does not know the hash, it is ``not_found`` and
the receipt is the only signal.

It cannot pay, and cannot know its balance: ``pay_invoice`` and ``balance_msat`` raise
:class:`WalletRefused` (code ``"receive_only"``); ``lookup_payment`` answers ``NOT_FOUND`` (this
wallet never paid anything). The invoice's expiry is the LNURL service's, not ``expiry_s``; a
``description_hash`` cannot be asked for (the invoice commits to the zap request).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from bot.nostr import nip57
from bot.nostr.hexutil import is_hex
from bot.nostr.keys import Keys
from bot.nostr.nip57 import ValidZap
from bot.relays.tasks import cancel_and_wait
from bot.wallets.base import (
    DEFAULT_INVOICE_EXPIRY_S,
    Invoice,
    InvoiceState,
    InvoiceStatus,
    LnurlError,
    PaymentResult,
    PaymentState,
    Settlement,
    WalletError,
    WalletProtocolError,
    WalletRefused,
    WalletUnavailable,
    check_invoice_request,
)
from bot.wallets.bolt11 import preimage_matches
from bot.wallets.lnurl import LnurlClient, PayRequest, VerifyResult, encode_lnurl

log = logging.getLogger(__name__)


class AgentAddress:
    """The agent's own lightning address: its payRequest (cached) and its zap signer key.

    ``nostr_pubkey()`` is what zap receipts must be signed by (NIP-57 appendix F); it is fetched
    from the address's own LNURL endpoint and cached for ``ttl_s``.
    """

    def __init__(self, address: str, lnurl: LnurlClient, *, ttl_s: float = 3600.0) -> None:
        self.address = address
        self._lnurl = lnurl
        self.url = lnurl.address_url(address)
        self.lnurl = encode_lnurl(self.url)
        self._ttl_s = ttl_s
        self._cached: PayRequest | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def pay_request(self) -> PayRequest:
        async with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._fetched_at > self._ttl_s:
                pay = await self._lnurl.fetch_pay_request(self.url)
                if not pay.allows_nostr or pay.nostr_pubkey is None:
                    raise LnurlError(
                        "the agent's lightning address does not support zaps", code="no_zaps"
                    )
                self._cached, self._fetched_at = pay, now
            return self._cached

    async def nostr_pubkey(self) -> str:
        pay = await self.pay_request()
        assert pay.nostr_pubkey is not None  # checked in pay_request
        return pay.nostr_pubkey


@dataclass
class _Made:
    amount_msat: int
    expires_at: int
    verify_url: str | None


class LightningAddressWallet:
    """See the module docstring."""

    def __init__(
        self,
        *,
        address: AgentAddress,
        lnurl: LnurlClient,
        keys: Keys,
        receipt_relays: Sequence[str],
        network: str = "bc",
        poll_interval_s: float = 5.0,
        verify_url_template: str | None = None,
    ) -> None:
        if not receipt_relays:
            raise ValueError("zap receipts need at least one relay")
        if verify_url_template is not None and "{payment_hash}" not in verify_url_template:
            raise ValueError("the verify URL template needs {payment_hash}")
        self._verify_template = verify_url_template
        self._address = address
        self._lnurl = lnurl
        self._keys = keys
        self._relays = tuple(receipt_relays)
        self._network = network
        self._poll_interval_s = poll_interval_s
        self._made: dict[str, _Made] = {}
        self._settled: dict[str, InvoiceStatus] = {}
        self._queue: asyncio.Queue[Settlement] = asyncio.Queue()
        self._poller: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return "lightning_address"

    @property
    def is_real_money(self) -> bool:
        return True

    @property
    def network(self) -> str:
        return self._network

    @property
    def address(self) -> AgentAddress:
        """The agent's own address (what zap receipts are validated against)."""
        return self._address

    def start(self) -> None:
        """Start polling the LUD-21 verify URLs of open invoices."""
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name="lightning-address-verify")

    async def aclose(self) -> None:
        poller, self._poller = self._poller, None
        await cancel_and_wait(poller)

    # -- receiving ---------------------------------------------------------------------------

    async def make_invoice(
        self,
        amount_msat: int,
        *,
        description: str = "",
        description_hash: bytes | None = None,
        expiry_s: int = DEFAULT_INVOICE_EXPIRY_S,
    ) -> Invoice:
        check_invoice_request(amount_msat, description, description_hash, expiry_s)
        if description_hash is not None:
            raise WalletRefused(
                "a lightning-address invoice commits to its zap request, not to a given hash",
                code="unsupported",
            )
        try:
            pay = await self._address.pay_request()
            zap_request = nip57.build_zap_request(
                self._keys,
                recipient_pubkey=self._keys.public_hex,
                amount_msat=amount_msat,
                relays=self._relays,
                lnurl=self._address.lnurl,
                content=description,
            )
            got = await self._lnurl.fetch_invoice(
                pay, amount_msat, zap_request_json=zap_request.to_json(), network=self._network
            )
        except LnurlError as exc:
            if exc.code == "unreachable":
                raise WalletUnavailable(str(exc)) from exc
            raise
        decoded = got.invoice
        self._made[decoded.payment_hash] = _Made(
            amount_msat=amount_msat, expires_at=decoded.expires_at, verify_url=got.verify_url
        )
        return Invoice(
            bolt11=got.bolt11,
            payment_hash=decoded.payment_hash,
            amount_msat=amount_msat,
            created_at=decoded.created_at,
            expires_at=decoded.expires_at,
        )

    def receipt_seen(self, zap: ValidZap) -> bool:
        """A validated zap receipt for one of our own invoices; True if it settled one now.

        The zap request inside it carries the agent's own signature, so it proves the invoice
        is ours even when it was made before a restart (and is no longer in memory).
        """
        if zap.zapper_pubkey != self._keys.public_hex or zap.payment_hash in self._settled:
            return False
        made = self._made.get(zap.payment_hash)
        if made is not None and zap.amount_msat != made.amount_msat:
            log.warning("lightning address: receipt amount differs for %s", zap.payment_hash)
            return False
        self._settle(zap.payment_hash, zap.amount_msat, zap.preimage, zap.paid_at)
        return True

    def _settle(self, payment_hash: str, amount_msat: int, preimage: str | None, at: int) -> None:
        status = InvoiceStatus(payment_hash, InvoiceState.SETTLED, amount_msat, preimage, at)
        self._settled[payment_hash] = status
        self._queue.put_nowait(Settlement(payment_hash, amount_msat, preimage, at))

    async def lookup_invoice(self, payment_hash: str) -> InvoiceStatus:
        done = self._settled.get(payment_hash)
        if done is not None:
            return done
        made = self._made.get(payment_hash)
        if made is None:
            made = await self._recover(payment_hash)
        now = int(time.time())
        if made.verify_url is not None:
            result = await self._verify(made.verify_url, payment_hash)
            if result.settled:
                preimage = result.preimage
                if preimage is not None and not preimage_matches(preimage, payment_hash):
                    raise WalletProtocolError("verify URL returned a preimage of another payment")
                self._settle(payment_hash, made.amount_msat, preimage, now)
                return self._settled[payment_hash]
        if made.expires_at <= now:
            return InvoiceStatus(payment_hash, InvoiceState.EXPIRED, made.amount_msat)
        return InvoiceStatus(payment_hash, InvoiceState.PENDING, made.amount_msat)

    async def _verify(
        self, verify_url: str, payment_hash: str, *, unknown_is_refusal: bool = False
    ) -> VerifyResult:
        """Ask a verify URL; its errors as wallet errors. With ``unknown_is_refusal``, a
        provider that answers it knows no such invoice is a ``not_found`` refusal."""
        try:
            return await self._lnurl.verify(verify_url, payment_hash=payment_hash)
        except LnurlError as exc:
            if unknown_is_refusal and exc.code == "service_error":
                raise WalletRefused("the verify URL knows no such invoice", "not_found") from exc
            if exc.code in ("malformed", "hash_mismatch"):
                raise WalletProtocolError(f"verify URL answer refused: {exc.code}") from exc
            raise WalletUnavailable(f"verify URL did not answer: {exc.code}") from exc

    async def _recover(self, payment_hash: str) -> _Made:
        """An invoice made before a restart, given back by the verify URL's ``pr``."""
        if self._verify_template is None or not is_hex(payment_hash.lower(), 64):
            raise WalletRefused("no invoice with this payment hash was made here", "not_found")
        url = self._verify_template.format(payment_hash=payment_hash.lower())
        result = await self._verify(url, payment_hash, unknown_is_refusal=True)
        invoice = result.invoice
        if invoice is None:
            raise WalletProtocolError("verify URL answer has no pr: the invoice is unknown")
        if invoice.amount_msat is None or invoice.network != self._network:
            raise WalletProtocolError("verify URL pr is not an invoice this wallet makes")
        made = _Made(amount_msat=invoice.amount_msat, expires_at=invoice.expires_at,
                     verify_url=url)
        self._made[invoice.payment_hash] = made
        return made

    async def settlements(self) -> AsyncIterator[Settlement]:
        while True:
            yield await self._queue.get()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            now = int(time.time())
            for payment_hash, made in list(self._made.items()):
                if made.expires_at < now - 3600:  # long gone: forget it
                    self._made.pop(payment_hash, None)
                    self._settled.pop(payment_hash, None)
                    continue
                if payment_hash in self._settled or made.verify_url is None:
                    continue
                if made.expires_at < now - 60:
                    continue
                try:
                    await self.lookup_invoice(payment_hash)
                except WalletError as exc:
                    log.info("lightning address: verify of %s failed: %s", payment_hash, exc)

    # -- sending: not possible ---------------------------------------------------------------

    async def pay_invoice(self, bolt11: str, *, max_fee_msat: int) -> PaymentResult:
        raise WalletRefused("a lightning address can only receive", code="receive_only")

    async def lookup_payment(self, payment_hash: str) -> PaymentResult:
        return PaymentResult(payment_hash, PaymentState.NOT_FOUND)

    async def balance_msat(self) -> int:
        raise WalletRefused("a lightning address has no readable balance", code="receive_only")
