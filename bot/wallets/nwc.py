"""The Nostr Wallet Connect (NIP-47) backend: a :class:`~bot.wallets.base.Wallet` whose requests
and answers travel as encrypted events through relays.

How it works:

- ``connect()`` reads the wallet service's info event (kind 13194) and picks the encryption:
  NIP-44 v2 when the wallet lists it, NIP-04 otherwise (also when the tag is absent). It then
  subscribes to responses (kind 23195) and notifications (23197, or 23196 with NIP-04) addressed
  to the client key — before any request is sent.
- Every request carries an ``expiration`` tag (now + the request timeout) so a wallet that gets it
  late ignores it, and waits for the response whose ``e`` tag names it.
- A request that gets no answer in time raises :class:`WalletUnavailable` — except
  ``pay_invoice``, which returns ``PaymentState.PENDING``: a late answer is not a failure, and a
  response that arrives after the timeout is kept so ``lookup_payment`` can report it.
- Every NIP-47 error code maps to one typed outcome (:func:`payment_state_for` for payments,
  :func:`error_for` for the other calls).
- Settlements come from ``payment_received`` notifications; invoices this wallet made are also
  polled with ``lookup_invoice`` until settled or expired, so a lost notification is not a lost
  payment. The same payment hash may be reported twice: consumers deduplicate.

NIP-47 has no fee-limit field: ``max_fee_msat`` cannot be sent to the wallet, so the fee cap is the
wallet service's own budget setting. A fee above the cap is reported in the result's ``reason``.

The relays are reached through an :class:`EventChannel` (publish, subscribe, unsubscribe): a
``bot.relays.RelayPool``. :meth:`NwcWallet.open` builds one over the URI's relays; nothing here
opens a socket itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import httpx

from bot.nostr import nip47
from bot.nostr.event import Event
from bot.nostr.keys import Keys
from bot.nostr.nip47 import (
    Encryption,
    ErrorCode,
    ErrorInfo,
    Nip47Error,
    NwcUri,
    Response,
    Transaction,
    TransactionState,
)
from bot.relays.config import RelayConfig
from bot.relays.pool import RelayPool
from bot.relays.tasks import cancel_and_wait
from bot.wallets.base import (
    DEFAULT_INVOICE_EXPIRY_S,
    InvalidInvoice,
    Invoice,
    InvoiceState,
    InvoiceStatus,
    PaymentResult,
    PaymentState,
    Settlement,
    WalletError,
    WalletProtocolError,
    WalletRefused,
    WalletUnavailable,
    check_invoice_request,
)
from bot.wallets.bolt11 import check_network, decode_invoice

log = logging.getLogger(__name__)

Handler = Callable[[Event, str], Awaitable[None]]
"""``handler(event, relay_url)``: called once per new, verified event of a subscription."""

INFO_LOOKBACK_S = 10 * 365 * 24 * 3600
"""The info event is replaceable and may be years old: look that far back for it."""
ANSWER_LOOKBACK_S = 60
CLOSE_STEP_TIMEOUT_S = 5.0
"""``aclose`` gives each unsubscribe this long (a channel that is not a RelayPool may hang)."""


class Published(Protocol):
    @property
    def ok(self) -> bool:
        """True when at least one relay accepted the event."""
        ...


class EventChannel(Protocol):
    """What the wallet needs from relays; ``bot.relays.RelayPool`` provides exactly this."""

    async def publish(self, event: Event) -> Published: ...

    async def subscribe(
        self,
        filters: Iterable[Mapping[str, Any]],
        handler: Handler,
        *,
        lookback_s: int = ...,
        durable_claim: bool = ...,
    ) -> Any: ...

    async def unsubscribe(self, sub: Any) -> None: ...


# Errors that prove the payment was not attempted or did not go through.
_PAYMENT_NOT_MADE = frozenset(
    {
        ErrorCode.PAYMENT_FAILED,
        ErrorCode.INSUFFICIENT_BALANCE,
        ErrorCode.QUOTA_EXCEEDED,
        ErrorCode.RESTRICTED,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.RATE_LIMITED,
        ErrorCode.NOT_IMPLEMENTED,
        ErrorCode.UNSUPPORTED_ENCRYPTION,
    }
)


def payment_state_for(code: ErrorCode) -> PaymentState:
    """A ``pay_invoice`` error as a payment state: FAILED only when certainly not paid.

    ``INTERNAL``, ``OTHER`` and ``NOT_FOUND`` leave the outcome unknown: PENDING, look it up.
    """
    return PaymentState.FAILED if code in _PAYMENT_NOT_MADE else PaymentState.PENDING


def error_for(error: ErrorInfo) -> WalletError:
    """A NIP-47 error of a non-payment call as the exception the caller sees.

    ``INTERNAL`` and ``RATE_LIMITED`` mean "try again later" (:class:`WalletUnavailable`); every
    other code is a refusal whose ``code`` is the NIP-47 code in lower case.
    """
    message = f"wallet service answered {error.code.value}: {error.message[:200]}"
    if error.code in (ErrorCode.INTERNAL, ErrorCode.RATE_LIMITED):
        return WalletUnavailable(message)
    return WalletRefused(message, code=error.code.value.lower())


class _LateAnswer(Exception):
    """No response within the request timeout."""


@dataclass
class _Watched:
    expires_at: int


class NwcWallet:
    """A wallet reached over NIP-47. Call :meth:`connect` before use, :meth:`aclose` after."""

    def __init__(
        self,
        uri: NwcUri,
        channel: EventChannel,
        *,
        network: str = "bc",
        request_timeout_s: float = 30.0,
        info_timeout_s: float = 10.0,
        poll_interval_s: float = 5.0,
    ) -> None:
        self._uri = uri
        self._keys = Keys.from_hex(uri.secret)
        self._channel = channel
        self._network = network
        self._request_timeout_s = request_timeout_s
        self._info_timeout_s = info_timeout_s
        self._poll_interval_s = poll_interval_s
        self._encryption: Encryption | None = None
        self._info: nip47.WalletInfo | None = None
        self._pending: dict[str, asyncio.Future[Response]] = {}
        self._pay_requests: dict[str, str] = {}  # request id -> payment hash
        self._late_payments: dict[str, PaymentResult] = {}  # payment hash -> late outcome
        self._watched: dict[str, _Watched] = {}
        self._settlements: asyncio.Queue[Settlement] = asyncio.Queue()
        self._subs: list[Any] = []
        self._poller: asyncio.Task[None] | None = None
        self._owned_pool: RelayPool | None = None

    # -- Wallet properties -------------------------------------------------------------------

    @property
    def name(self) -> str:
        return "nwc"

    @property
    def is_real_money(self) -> bool:
        return True

    @property
    def network(self) -> str:
        return self._network

    @property
    def client_pubkey(self) -> str:
        return self._keys.public_hex

    @property
    def encryption(self) -> Encryption:
        if self._encryption is None:
            raise WalletUnavailable("NWC wallet is not connected")
        return self._encryption

    @property
    def info(self) -> nip47.WalletInfo:
        if self._info is None:
            raise WalletUnavailable("NWC wallet is not connected")
        return self._info

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        uri: NwcUri,
        *,
        network: str | None = None,
        request_timeout_s: float = 30.0,
        info_timeout_s: float = 10.0,
        poll_interval_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> NwcWallet:
        """A connected wallet on its own relay pool over the URI's relays.

        The pool is the wallet's own (in-memory dedupe, NIP-42 AUTH with the connection key):
        the URI names the wallet's relays, which need not be the agent's. ``aclose`` stops it.
        ``network=None`` asks the wallet (``get_info``), and assumes mainnet if it cannot say.
        """
        pool = RelayPool(
            [RelayConfig(url) for url in uri.relays],
            keys=Keys.from_hex(uri.secret),
            http_client=http_client,
        )
        await pool.start()
        wallet = cls(
            uri,
            pool,
            network=network or "bc",
            request_timeout_s=request_timeout_s,
            info_timeout_s=info_timeout_s,
            poll_interval_s=poll_interval_s,
        )
        wallet._owned_pool = pool
        try:
            if not await pool.wait_connected(connect_timeout_s):
                raise WalletUnavailable("cannot reach any relay of the NWC connection")
            await wallet.connect()
            if network is None:
                wallet._network = await wallet._network_from_info()
        except BaseException:
            await wallet.aclose()
            raise
        return wallet

    async def _network_from_info(self) -> str:
        if "get_info" not in self.info.methods:
            return self._network
        try:
            answer = await self.get_info()
        except WalletError as exc:
            log.info("nwc: get_info failed (%s); assuming %s", exc, self._network)
            return self._network
        return NETWORK_PREFIXES.get(str(answer.get("network", "")).lower(), self._network)

    async def connect(self) -> None:
        """Read the info event, choose the encryption, subscribe to answers."""
        if self._encryption is not None:
            return
        wallet = self._uri.wallet_pubkey
        found: asyncio.Future[Event] = asyncio.get_running_loop().create_future()

        async def on_info(event: Event, relay_url: str) -> None:
            if event.pubkey == wallet and event.kind == nip47.INFO_KIND and not found.done():
                found.set_result(event)

        info_sub = await self._channel.subscribe(
            [{"kinds": [nip47.INFO_KIND], "authors": [wallet], "limit": 1}],
            on_info,
            lookback_s=INFO_LOOKBACK_S,
        )
        try:
            async with asyncio.timeout(self._info_timeout_s):
                info_event = await found
        except TimeoutError as exc:
            raise WalletUnavailable("NWC wallet service published no info event") from exc
        finally:
            await self._channel.unsubscribe(info_sub)
        try:
            self._info = nip47.parse_info(info_event.content, info_event.tags)
        except Nip47Error as exc:
            raise WalletProtocolError(str(exc)) from exc
        self._encryption = self._info.preferred_encryption()
        notification_kind = (
            nip47.NOTIFICATION_KIND
            if self._encryption is Encryption.NIP44_V2
            else nip47.LEGACY_NOTIFICATION_KIND
        )
        self._subs.append(
            await self._channel.subscribe(
                [
                    {
                        "kinds": [nip47.RESPONSE_KIND, notification_kind],
                        "authors": [wallet],
                        "#p": [self._keys.public_hex],
                    }
                ],
                self._on_event,
                lookback_s=ANSWER_LOOKBACK_S,
            )
        )
        self._poller = asyncio.create_task(self._poll_watched(), name="nwc-invoice-poller")

    async def aclose(self) -> None:
        """Stop polling, drop the subscriptions, stop the owned pool: always in bounded time,
        also when the relays are dead (each step is bounded, none is skipped for another)."""
        poller, self._poller = self._poller, None
        await cancel_and_wait(poller)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_STEP_TIMEOUT_S):
                    await self._channel.unsubscribe(sub)
        self._subs.clear()
        for fut in self._pending.values():
            if not fut.done():  # the callers get a clear error, not a stray CancelledError
                fut.set_exception(WalletUnavailable("the NWC wallet was closed"))
        self._pending.clear()
        if self._owned_pool is not None:
            await self._owned_pool.stop()
            self._owned_pool = None

    # -- incoming events ---------------------------------------------------------------------

    async def _on_event(self, event: Event, relay_url: str) -> None:
        if event.pubkey != self._uri.wallet_pubkey:
            return
        try:
            plaintext = nip47.unseal(
                self._keys,
                self._uri.wallet_pubkey,
                nip47.scheme_of_content(event.content),
                event.content,
            )
        except Nip47Error as exc:
            log.warning("nwc: dropped undecryptable event %s: %s", event.id, exc)
            if event.kind == nip47.RESPONSE_KIND:  # the wallet signed it: its request fails now
                self._fail_request(event.first_tag("e"), exc)
            return
        if event.kind == nip47.RESPONSE_KIND:
            self._on_response(event, plaintext)
        else:
            self._on_notification(plaintext)

    def _on_response(self, event: Event, plaintext: str) -> None:
        request_id = event.first_tag("e")
        if request_id is None:
            log.warning("nwc: response %s names no request", event.id)
            return
        fut = self._pending.get(request_id)
        try:
            response = nip47.decode_response(plaintext)
        except Nip47Error as exc:
            log.warning("nwc: malformed response to %s: %s", request_id, exc)
            self._fail_request(request_id, exc)
            return
        if fut is not None and not fut.done():
            fut.set_result(response)
            return
        payment_hash = self._pay_requests.pop(request_id, None)
        if payment_hash is not None:
            self._late_payments[payment_hash] = self._payment_result(payment_hash, response)
            _trim(self._late_payments)
            log.info("nwc: late pay_invoice answer kept for %s", payment_hash)

    def _fail_request(self, request_id: str | None, exc: Nip47Error) -> None:
        """A malformed answer fails the request waiting for it at once (no timeout wait)."""
        fut = self._pending.get(request_id) if request_id is not None else None
        if fut is not None and not fut.done():
            fut.set_exception(WalletProtocolError(str(exc)))

    def _on_notification(self, plaintext: str) -> None:
        try:
            note = nip47.decode_notification(plaintext)
            if note.notification_type != "payment_received":
                return
            tx = nip47.parse_transaction(note.notification)
        except Nip47Error as exc:
            log.warning("nwc: malformed notification: %s", exc)
            return
        if not tx.incoming:
            return
        self._push_settlement(tx)

    def _push_settlement(self, tx: Transaction) -> None:
        self._watched.pop(tx.payment_hash, None)
        self._settlements.put_nowait(
            Settlement(
                payment_hash=tx.payment_hash,
                amount_msat=tx.amount_msat,
                preimage=tx.preimage,
                settled_at=tx.settled_at or int(time.time()),
            )
        )

    # -- requests ----------------------------------------------------------------------------

    async def _request(
        self, method: str, params: Mapping[str, Any], *, payment_hash: str | None = None
    ) -> Response:
        scheme = self.encryption
        expiration = int(time.time() + self._request_timeout_s) + 1
        event = nip47.request_event(
            self._keys, self._uri.wallet_pubkey, scheme, method, params, expiration=expiration
        )
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[event.id] = fut
        if payment_hash is not None:
            self._pay_requests[event.id] = payment_hash
            _trim(self._pay_requests)
        try:
            try:
                published = await self._channel.publish(event)
            except Exception as exc:
                raise WalletUnavailable(f"could not send {method} to the relays") from exc
            if not published.ok:
                raise WalletUnavailable(f"no relay accepted the {method} request")
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # when the answer arrives at the same moment, and the poller would never stop
                async with asyncio.timeout(self._request_timeout_s):
                    response = await asyncio.shield(fut)
            except TimeoutError as exc:
                raise _LateAnswer(method) from exc
        finally:
            self._pending.pop(event.id, None)
        if payment_hash is not None:
            self._pay_requests.pop(event.id, None)
        # an error answer may not name the method (a wallet that cannot decrypt cannot know it)
        if response.result_type != method and response.error is None:
            raise WalletProtocolError(f"asked {method}, got an answer for {response.result_type}")
        return response

    async def _call(self, method: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        if self._info is not None and method not in self._info.methods:
            raise WalletRefused(
                f"the wallet service does not offer {method}", code="not_implemented"
            )
        try:
            response = await self._request(method, params)
        except _LateAnswer as exc:
            raise WalletUnavailable(f"{method}: no answer from the wallet service in time") from exc
        if response.error is not None:
            raise error_for(response.error)
        if response.result is None:
            raise WalletProtocolError(f"{method}: empty result")
        return response.result

    async def make_invoice(
        self,
        amount_msat: int,
        *,
        description: str = "",
        description_hash: bytes | None = None,
        expiry_s: int = DEFAULT_INVOICE_EXPIRY_S,
    ) -> Invoice:
        check_invoice_request(amount_msat, description, description_hash, expiry_s)
        params: dict[str, Any] = {"amount": amount_msat, "expiry": expiry_s}
        if description_hash is not None:
            params["description_hash"] = description_hash.hex()
        else:
            params["description"] = description
        result = await self._call("make_invoice", params)
        tx = self._transaction(result)
        if tx.invoice is None:
            raise WalletProtocolError("make_invoice: no invoice in the answer")
        try:
            decoded = decode_invoice(tx.invoice)
        except InvalidInvoice as exc:
            raise WalletProtocolError("make_invoice: the wallet sent a bad invoice") from exc
        if decoded.payment_hash != tx.payment_hash:
            raise WalletProtocolError("make_invoice: payment hash does not match the invoice")
        if decoded.amount_msat != amount_msat:
            raise WalletProtocolError("make_invoice: invoice amount differs from the request")
        created = tx.created_at or decoded.created_at
        expires = tx.expires_at or decoded.expires_at
        self._watched[tx.payment_hash] = _Watched(expires_at=expires)
        return Invoice(
            bolt11=tx.invoice,
            payment_hash=tx.payment_hash,
            amount_msat=amount_msat,
            created_at=created,
            expires_at=expires,
        )

    async def lookup_invoice(self, payment_hash: str) -> InvoiceStatus:
        result = await self._call("lookup_invoice", {"payment_hash": payment_hash})
        tx = self._transaction(result)
        return InvoiceStatus(
            payment_hash=tx.payment_hash,
            state=_invoice_state(tx),
            amount_msat=tx.amount_msat,
            preimage=tx.preimage,
            settled_at=tx.settled_at,
        )

    async def pay_invoice(self, bolt11_invoice: str, *, max_fee_msat: int) -> PaymentResult:
        decoded = decode_invoice(bolt11_invoice)
        check_network(decoded, self._network)
        payment_hash = decoded.payment_hash
        if self._encryption is None:
            raise WalletUnavailable("NWC wallet is not connected")
        if "pay_invoice" not in self.info.methods:
            raise WalletRefused("the wallet service does not offer pay_invoice", "not_implemented")
        try:
            response = await self._request(
                "pay_invoice", {"invoice": bolt11_invoice}, payment_hash=payment_hash
            )
        except _LateAnswer:
            log.warning("nwc: pay_invoice %s: no answer in time, left pending", payment_hash)
            return PaymentResult(payment_hash, PaymentState.PENDING, reason="no answer in time")
        except WalletUnavailable as exc:
            # the publish was not confirmed; a relay may still have passed it on, so the outcome
            # is unknown until a lookup (the request's expiration tag bounds that window)
            log.warning("nwc: pay_invoice %s not confirmed sent: %s", payment_hash, exc)
            return PaymentResult(payment_hash, PaymentState.PENDING, reason="not confirmed sent")
        result = self._payment_result(payment_hash, response)
        if result.fee_msat is not None and result.fee_msat > max_fee_msat:
            log.warning("nwc: fee %s msat above the cap %s", result.fee_msat, max_fee_msat)
            return replace(result, reason="fee above cap")
        return result

    def _payment_result(self, payment_hash: str, response: Response) -> PaymentResult:
        if response.error is not None:
            code = response.error.code
            return PaymentResult(payment_hash, payment_state_for(code), reason=code.value.lower())
        result = response.result or {}
        preimage = result.get("preimage")
        fees = result.get("fees_paid")
        if not isinstance(preimage, str) or not preimage:
            return PaymentResult(payment_hash, PaymentState.PENDING, reason="no preimage")
        fee_msat = fees if isinstance(fees, int) and not isinstance(fees, bool) else None
        return PaymentResult(payment_hash, PaymentState.SUCCEEDED, preimage.lower(), fee_msat)

    async def lookup_payment(self, payment_hash: str) -> PaymentResult:
        try:
            result = await self._call("lookup_invoice", {"payment_hash": payment_hash})
        except WalletRefused as exc:
            if exc.code == ErrorCode.NOT_FOUND.value.lower():
                late = self._late_payments.get(payment_hash)
                return late or PaymentResult(payment_hash, PaymentState.NOT_FOUND)
            raise
        tx = self._transaction(result)
        if tx.state is TransactionState.SETTLED or (tx.state is None and tx.preimage):
            return PaymentResult(
                payment_hash, PaymentState.SUCCEEDED, tx.preimage, tx.fees_paid_msat
            )
        if tx.state in (TransactionState.FAILED, TransactionState.EXPIRED):
            return PaymentResult(payment_hash, PaymentState.FAILED, reason=tx.state.value)
        return PaymentResult(payment_hash, PaymentState.PENDING)

    async def balance_msat(self) -> int:
        result = await self._call("get_balance", {})
        balance = result.get("balance")
        if isinstance(balance, bool) or not isinstance(balance, int) or balance < 0:
            raise WalletProtocolError("get_balance: balance is not a non-negative integer")
        return balance

    async def get_info(self) -> Mapping[str, Any]:
        return await self._call("get_info", {})

    # -- settlements -------------------------------------------------------------------------

    async def settlements(self) -> AsyncIterator[Settlement]:
        while True:
            yield await self._settlements.get()

    async def _poll_watched(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            now = int(time.time())
            for payment_hash, watched in list(self._watched.items()):
                try:
                    status = await self.lookup_invoice(payment_hash)
                except WalletError as exc:
                    log.info("nwc: lookup of %s failed: %s", payment_hash, exc)
                    continue
                if status.state is InvoiceState.SETTLED:
                    if self._watched.pop(payment_hash, None) is not None:
                        self._settlements.put_nowait(
                            Settlement(
                                payment_hash=payment_hash,
                                amount_msat=status.amount_msat,
                                preimage=status.preimage,
                                settled_at=status.settled_at or now,
                            )
                        )
                elif status.state is not InvoiceState.PENDING or watched.expires_at < now - 60:
                    self._watched.pop(payment_hash, None)

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _transaction(result: Mapping[str, Any]) -> Transaction:
        try:
            return nip47.parse_transaction(result)
        except Nip47Error as exc:
            raise WalletProtocolError(str(exc)) from exc


def _invoice_state(tx: Transaction) -> InvoiceState:
    if tx.state is TransactionState.SETTLED or (tx.state is None and tx.settled_at):
        return InvoiceState.SETTLED
    if tx.state is TransactionState.EXPIRED:
        return InvoiceState.EXPIRED
    if tx.state is TransactionState.FAILED:
        return InvoiceState.FAILED
    if tx.expires_at is not None and tx.expires_at < int(time.time()):
        return InvoiceState.EXPIRED
    return InvoiceState.PENDING


NETWORK_PREFIXES = {
    "mainnet": "bc", "bitcoin": "bc", "testnet": "tb", "signet": "tbs", "regtest": "bcrt",
}
"""``get_info``'s network names → bolt11 prefixes."""

_KEEP = 1000


def _trim(mapping: dict[str, Any]) -> None:
    """Keep the newest entries of a bookkeeping map (late answers, unanswered requests)."""
    while len(mapping) > _KEEP:
        mapping.pop(next(iter(mapping)))
