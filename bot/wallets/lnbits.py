"""LNbits over its REST API (an injected ``httpx.AsyncClient``), settlements by websocket.

``LnbitsWallet(http, url=..., invoice_key=..., admin_key=..., network="bc")``:

- ``make_invoice`` → ``POST /api/v1/payments`` (``out: false``) with the invoice key. LNbits
  invoices are whole satoshis: an amount that is not a multiple of 1000 msat is refused
  (``WalletRefused``, code ``"whole_sats_only"``). The returned bolt11 is decoded and must carry
  the amount and payment hash LNbits claims (else ``WalletProtocolError``).
- ``lookup_invoice`` / ``lookup_payment`` → ``GET /api/v1/payments/{hash}``; incoming and
  outgoing are told apart by the sign of ``details.amount``. An unknown hash is
  ``PaymentState.NOT_FOUND`` for payments and ``WalletRefused`` (code ``"not_found"``) for
  invoices.
- ``pay_invoice`` → first ``GET /api/v1/payments/fee-reserve``: LNbits takes no per-payment fee
  limit, so a payment whose fee reserve exceeds ``max_fee_msat`` is not attempted (``FAILED``,
  nothing sent). Then ``POST /api/v1/payments`` (``out: true``) with the admin key. A timeout or
  a dropped connection after sending is ``PENDING`` (look it up later), never ``FAILED``.
- ``balance_msat`` → ``GET /api/v1/wallet``.
- ``settlements()`` → the websocket ``/api/v1/ws/{invoice_key}``, reconnecting with backoff;
  only incoming, successful payments are yielded, repeats included (LNbits sends each twice).
  ``websocket_connected`` (an ``asyncio.Event``) is set while it is connected. Payments made
  while it was down are not replayed: use ``SettlementProcessor.poll`` over open invoices.
- ``settlement_from_webhook(body)``: a webhook body is unauthenticated, so it is only a hint:
  the payment hash it names is looked up with the invoice key and a :class:`Settlement` is
  returned only when LNbits itself says that incoming payment is settled. Double-encoded JSON
  (as LNbits sends it) is accepted.

Keys never appear in logs or exception messages (the websocket URL contains the invoice key and
is never logged).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import websockets

from bot.nostr.hexutil import is_hex
from bot.untrusted import load_json
from bot.wallets.base import (
    DEFAULT_INVOICE_EXPIRY_S,
    InvalidInvoice,
    Invoice,
    InvoiceState,
    InvoiceStatus,
    PaymentResult,
    PaymentState,
    Settlement,
    WalletProtocolError,
    WalletRefused,
    WalletUnavailable,
    check_invoice_request,
)
from bot.wallets.bolt11 import decode_invoice

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 1 << 20
"""An LNbits answer, webhook body or websocket message larger than this is refused unread."""

# The websocket URL carries the invoice key, and the websockets library logs the request line
# at DEBUG: its logger is pinned at WARNING so no logging configuration can print the key.
_ws_log = logging.getLogger(f"{__name__}.websocket")
_ws_log.setLevel(logging.WARNING)

def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WalletProtocolError(f"LNbits sent a non-numeric {what}")
    if isinstance(value, float) and not value.is_integer():
        raise WalletProtocolError(f"LNbits sent a fractional {what}")
    return int(value)


class LnbitsWallet:
    """An LNbits wallet; see the module docstring. A ``Wallet`` and a ``SettlementSource``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        url: str,
        invoice_key: str,
        admin_key: str | None = None,
        network: str = "bc",
        webhook_url: str | None = None,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._url = url.rstrip("/")
        self._invoice_key = invoice_key
        self._admin_key = admin_key
        self._network = network
        self._webhook_url = webhook_url
        self._timeout_s = timeout_s
        self._clock = clock
        self.websocket_connected = asyncio.Event()
        """Set while the settlement websocket is connected (for health checks and tests)."""

    def __repr__(self) -> str:
        return f"LnbitsWallet(url={self._url!r})"

    @property
    def name(self) -> str:
        return "lnbits"

    @property
    def is_real_money(self) -> bool:
        return True

    @property
    def network(self) -> str:
        return self._network

    # -- HTTP plumbing: every httpx error is translated here --------------------------------

    async def _request(
        self, method: str, path: str, key: str, body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return await self._http.request(
                method,
                f"{self._url}{path}",
                headers={"X-Api-Key": key},
                json=body,
                params=params,
                timeout=self._timeout_s,
            )
        except httpx.TimeoutException as exc:
            raise WalletUnavailable("LNbits did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise WalletUnavailable(f"LNbits unreachable ({type(exc).__name__})") from exc

    @staticmethod
    def _json(resp: httpx.Response) -> dict[str, Any]:
        data = load_json(resp.content, max_chars=MAX_ANSWER_BYTES, error=WalletProtocolError,
                         what=f"LNbits answer (HTTP {resp.status_code})")
        if not isinstance(data, dict):
            raise WalletProtocolError("LNbits sent an unexpected JSON shape")
        return data

    @staticmethod
    def _detail(data: dict[str, Any]) -> str:
        detail = data.get("detail")
        return str(detail)[:200] if detail is not None else "no detail"

    def _check_status(self, resp: httpx.Response) -> dict[str, Any]:
        if resp.status_code in (401, 403):
            raise WalletRefused("LNbits refused the key", code="unauthorized")
        if resp.status_code >= 500:
            raise WalletUnavailable(f"LNbits server error (HTTP {resp.status_code})")
        data = self._json(resp)
        if resp.status_code >= 400:
            raise WalletRefused(f"LNbits refused: {self._detail(data)}", code="bad_request")
        return data

    def _admin(self) -> str:
        if self._admin_key is None:
            raise WalletRefused("this LNbits wallet has no admin key: cannot pay",
                                code="receive_only")
        return self._admin_key

    # -- the Wallet interface -------------------------------------------------------------

    async def make_invoice(
        self,
        amount_msat: int,
        *,
        description: str = "",
        description_hash: bytes | None = None,
        expiry_s: int = DEFAULT_INVOICE_EXPIRY_S,
    ) -> Invoice:
        check_invoice_request(amount_msat, description, description_hash, expiry_s)
        if amount_msat % 1000:
            raise WalletRefused("LNbits invoices are whole satoshis", code="whole_sats_only")
        body: dict[str, Any] = {
            "out": False,
            "amount": amount_msat // 1000,
            "unit": "sat",
            "memo": description,
            "expiry": expiry_s,
        }
        if description_hash is not None:
            body["description_hash"] = description_hash.hex()
        if self._webhook_url is not None:
            body["webhook"] = self._webhook_url
        resp = await self._request("POST", "/api/v1/payments", self._invoice_key, body)
        data = self._check_status(resp)
        bolt11 = data.get("bolt11") or data.get("payment_request")
        payment_hash = data.get("payment_hash")
        if not isinstance(bolt11, str) or not isinstance(payment_hash, str):
            raise WalletProtocolError("LNbits invoice answer lacks bolt11 or payment_hash")
        try:
            decoded = decode_invoice(bolt11)
        except InvalidInvoice as exc:
            raise WalletProtocolError("LNbits returned an invoice that does not decode") from exc
        if decoded.payment_hash != payment_hash or decoded.amount_msat != amount_msat:
            raise WalletProtocolError("LNbits invoice does not match what was asked")
        if description_hash is not None and decoded.description_hash != description_hash.hex():
            raise WalletProtocolError("LNbits invoice lacks the requested description hash")
        return Invoice(
            bolt11=decoded.bolt11,
            payment_hash=payment_hash,
            amount_msat=amount_msat,
            created_at=decoded.created_at,
            expires_at=decoded.expires_at,
        )

    async def _payment(self, payment_hash: str) -> dict[str, Any] | None:
        if not is_hex(payment_hash, 64):
            raise WalletRefused("payment hash must be 64 hex characters", code="bad_hash")
        resp = await self._request("GET", f"/api/v1/payments/{payment_hash}", self._invoice_key)
        if resp.status_code == 404:
            return None
        data = self._check_status(resp)
        details = data.get("details")
        if not isinstance(details, dict):
            raise WalletProtocolError("LNbits payment answer lacks details")
        data["details"] = details
        return data

    async def lookup_invoice(self, payment_hash: str) -> InvoiceStatus:
        data = await self._payment(payment_hash)
        if data is None:
            raise WalletRefused("LNbits does not know this invoice", code="not_found")
        details: dict[str, Any] = data["details"]
        amount = _as_int(details.get("amount"), "amount")
        if amount <= 0:
            raise WalletRefused("this payment hash is an outgoing payment", code="not_found")
        if data.get("paid") is True:
            preimage = data.get("preimage")
            return InvoiceStatus(
                payment_hash=payment_hash,
                state=InvoiceState.SETTLED,
                amount_msat=amount,
                preimage=preimage if isinstance(preimage, str) else None,
                settled_at=int(self._clock()),
            )
        if data.get("status") == "failed" or details.get("status") == "failed":
            return InvoiceStatus(payment_hash, InvoiceState.FAILED, amount)
        bolt11 = details.get("bolt11")
        if isinstance(bolt11, str):
            try:
                if decode_invoice(bolt11).is_expired(int(self._clock())):
                    return InvoiceStatus(payment_hash, InvoiceState.EXPIRED, amount)
            except InvalidInvoice as exc:
                raise WalletProtocolError("LNbits holds an invoice that does not decode") from exc
        return InvoiceStatus(payment_hash, InvoiceState.PENDING, amount)

    async def lookup_payment(self, payment_hash: str) -> PaymentResult:
        data = await self._payment(payment_hash)
        if data is None:
            return PaymentResult(payment_hash, PaymentState.NOT_FOUND)
        details: dict[str, Any] = data["details"]
        if _as_int(details.get("amount"), "amount") >= 0:
            return PaymentResult(payment_hash, PaymentState.NOT_FOUND,
                                 reason="only an incoming payment has this hash")
        return self._outgoing_result(payment_hash, data.get("paid") is True,
                                     str(data.get("status") or details.get("status") or ""),
                                     details)

    def _outgoing_result(
        self, payment_hash: str, paid: bool, status: str, details: dict[str, Any]
    ) -> PaymentResult:
        if paid or status == "success":
            preimage = details.get("preimage")
            return PaymentResult(
                payment_hash,
                PaymentState.SUCCEEDED,
                preimage=preimage if isinstance(preimage, str) else None,
                fee_msat=abs(_as_int(details.get("fee", 0), "fee")),
            )
        if status == "failed":
            return PaymentResult(payment_hash, PaymentState.FAILED, reason="LNbits: failed")
        return PaymentResult(payment_hash, PaymentState.PENDING, reason="LNbits: in flight")

    async def pay_invoice(self, bolt11: str, *, max_fee_msat: int) -> PaymentResult:
        decoded = decode_invoice(bolt11)
        admin_key = self._admin()
        payment_hash = decoded.payment_hash
        if decoded.network != self._network:
            return PaymentResult(payment_hash, PaymentState.FAILED,
                                 reason="invoice is for another network")
        reserve_resp = await self._request(
            "GET", "/api/v1/payments/fee-reserve", self._invoice_key,
            params={"invoice": decoded.bolt11},
        )
        reserve = _as_int(self._check_status(reserve_resp).get("fee_reserve"), "fee reserve")
        if reserve > max_fee_msat:
            return PaymentResult(
                payment_hash, PaymentState.FAILED,
                reason=f"LNbits fee reserve {reserve} msat exceeds the cap {max_fee_msat} msat",
            )
        try:
            resp = await self._http.post(
                f"{self._url}/api/v1/payments",
                headers={"X-Api-Key": admin_key},
                json={"out": True, "bolt11": decoded.bolt11},
                timeout=self._timeout_s,
            )
        except httpx.ConnectError:
            return PaymentResult(payment_hash, PaymentState.FAILED,
                                 reason="LNbits unreachable: not sent")
        except httpx.HTTPError as exc:
            log.warning("LNbits pay: no answer (%s); the payment may be in flight",
                        type(exc).__name__)
            return PaymentResult(payment_hash, PaymentState.PENDING,
                                 reason="no answer from LNbits: look it up later")
        if resp.status_code in (401, 403):
            raise WalletRefused("LNbits refused the key", code="unauthorized")
        if resp.status_code == 520 or 400 <= resp.status_code < 500:
            data = self._json(resp)
            status = str(data.get("status", "failed" if resp.status_code < 500 else "pending"))
            reason = f"LNbits: {self._detail(data)}"
            state = PaymentState.FAILED if status == "failed" else PaymentState.PENDING
            return PaymentResult(payment_hash, state, reason=reason)
        if resp.status_code >= 500:
            return PaymentResult(payment_hash, PaymentState.PENDING,
                                 reason=f"LNbits server error (HTTP {resp.status_code})")
        data = self._json(resp)
        return self._outgoing_result(payment_hash, False, str(data.get("status", "")), data)

    async def balance_msat(self) -> int:
        resp = await self._request("GET", "/api/v1/wallet", self._invoice_key)
        return _as_int(self._check_status(resp).get("balance"), "balance")

    async def check_admin_key(self) -> None:
        """Ask LNbits whether the admin key is one (``GET /api/v1/wallet`` names the wallet's id
        only to an admin key): ``WalletRefused`` (code ``"receive_only"`` / ``"not_admin"`` /
        ``"unauthorized"``) when it cannot pay."""
        resp = await self._request("GET", "/api/v1/wallet", self._admin())
        if "id" not in self._check_status(resp):
            raise WalletRefused("the LNbits admin key is not an admin key", code="not_admin")

    async def aclose(self) -> None:
        return None

    # -- settlements ----------------------------------------------------------------------

    def settlements(self) -> AsyncIterator[Settlement]:
        return self._websocket_settlements()

    async def _websocket_settlements(self) -> AsyncIterator[Settlement]:
        ws_url = "ws" + self._url.removeprefix("http") + f"/api/v1/ws/{self._invoice_key}"
        delay = 0.5
        while True:
            try:
                async with websockets.connect(
                    ws_url, open_timeout=self._timeout_s, logger=_ws_log
                ) as ws:
                    delay = 0.5
                    self.websocket_connected.set()
                    async for message in ws:
                        settlement = parse_ws_message(message)
                        if settlement is not None:
                            yield settlement
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                log.warning("LNbits websocket dropped (%s); reconnecting", type(exc).__name__)
            finally:
                self.websocket_connected.clear()
            await asyncio.sleep(delay * (1 + random.random() / 2))
            delay = min(delay * 2, 30.0)

    async def settlement_from_webhook(self, body: bytes | str) -> Settlement | None:
        """Verify a webhook hint against LNbits; ``None`` when it names no settled invoice."""
        payment_hash = parse_webhook_hash(body)
        if payment_hash is None:
            return None
        try:
            status = await self.lookup_invoice(payment_hash)
        except WalletRefused:
            return None
        if status.state is not InvoiceState.SETTLED:
            return None
        return Settlement(payment_hash, status.amount_msat, status.preimage,
                          status.settled_at or int(self._clock()))


def _loads(raw: bytes | str) -> Any:
    """A webhook body or websocket message (plain or double-encoded JSON); None if refused."""
    try:
        data = load_json(raw, max_chars=MAX_ANSWER_BYTES, error=WalletProtocolError,
                         what="LNbits message")
        if isinstance(data, str):
            data = load_json(data, max_chars=MAX_ANSWER_BYTES, error=WalletProtocolError,
                             what="LNbits message")
    except WalletProtocolError:
        return None
    return data


def parse_webhook_hash(body: bytes | str) -> str | None:
    """The payment hash a webhook body names (plain or double-encoded JSON), else ``None``."""
    data = _loads(body)
    if not isinstance(data, dict):
        return None
    payment_hash = data.get("payment_hash")
    return payment_hash if is_hex(payment_hash, 64) else None


def parse_ws_message(message: str | bytes) -> Settlement | None:
    """A settlement from one LNbits websocket message, or ``None`` (outgoing, pending, junk)."""
    data = _loads(message)
    if not isinstance(data, dict):
        return None
    payment = data.get("payment")
    if not isinstance(payment, dict) or payment.get("status") != "success":
        return None
    payment_hash = payment.get("payment_hash")
    amount = payment.get("amount")
    if not isinstance(payment_hash, str) or not is_hex(payment_hash, 64):
        return None
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        return None
    preimage = payment.get("preimage")
    return Settlement(
        payment_hash=payment_hash,
        amount_msat=amount,
        preimage=preimage if isinstance(preimage, str) else None,
        settled_at=int(time.time()),
    )
