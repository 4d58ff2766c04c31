"""LNURL-pay client (LUD-06), lightning addresses (LUD-16), LNURL bech32 (LUD-01), verify (LUD-21).

``LnurlClient(http, insecure_hosts=frozenset())``:

- ``fetch_pay_request(url)`` → :class:`PayRequest` (callback, min/max sendable msat, metadata,
  ``allows_nostr`` / ``nostr_pubkey`` for NIP-57, comment length).
- ``fetch_invoice(pay_request, amount_msat, zap_request_json=None, comment=None,
  network=None)`` → :class:`LnurlInvoice`. The bolt11 from the callback is decoded and checked:
  its amount must equal ``amount_msat``, its description hash must equal ``sha256(metadata)`` —
  or ``sha256(zap_request_json)`` when a NIP-57 zap request is sent — and, when ``network`` is
  given, it must be on that network. Any failure is :class:`~bot.wallets.base.LnurlError` with a
  ``code`` (``"amount_mismatch"``, ``"description_hash_mismatch"``, ``"wrong_network"``,
  ``"out_of_range"``, ``"service_error"``, ``"unreachable"``, ``"malformed"``, ``"bad_address"``).
- ``invoice_for_address(address, amount_msat, ...)``: both steps for ``name@domain``.
- ``verify(verify_url, payment_hash=None)`` → :class:`VerifyResult` (LUD-21 ``settled``,
  ``preimage`` and the invoice ``pr``, decoded). A ``pr`` that does not decode is ``"malformed"``;
  when ``payment_hash`` is given, a ``pr`` for another payment hash is ``"hash_mismatch"``.

Addresses and LNURLs come from untrusted profiles, so requests only go to ``https://`` domain
names; IP literals, ``localhost`` and plain ``http`` are refused unless the host is listed in
``insecure_hosts`` (tests and local runs list ``127.0.0.1:PORT``). ``.onion`` uses ``http`` as
LUD-16 says. Redirects are not followed and answers larger than :data:`MAX_RESPONSE_BYTES` are
refused.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import bech32
import httpx

from bot.untrusted import load_json
from bot.wallets.base import InvalidInvoice, LnurlError
from bot.wallets.bolt11 import DecodedInvoice, decode_invoice

MAX_RESPONSE_BYTES = 256 * 1024
MAX_LNURL_CHARS = 2048
"""A longer bech32 LNURL is refused before the checksum (whose cost grows with the length)."""
_USERNAME = re.compile(r"^[a-z0-9\-_.+]{1,64}$")
_DOMAIN = re.compile(r"^[a-z0-9.\-]{1,253}(:\d{1,5})?$")


@dataclass(frozen=True, slots=True)
class PayRequest:
    callback: str
    min_sendable_msat: int
    max_sendable_msat: int
    metadata: str
    comment_allowed: int = 0
    allows_nostr: bool = False
    nostr_pubkey: str | None = None


@dataclass(frozen=True, slots=True)
class LnurlInvoice:
    bolt11: str
    invoice: DecodedInvoice
    verify_url: str | None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    settled: bool
    preimage: str | None
    invoice: DecodedInvoice | None = None
    """The decoded ``pr`` (amount, expiry, network...), or None if the service left it out."""


def lightning_address_url(address: str) -> str:
    """``name@domain`` → ``https://domain/.well-known/lnurlp/name`` (``http`` for .onion)."""
    if not isinstance(address, str) or address.count("@") != 1:
        raise LnurlError("not a lightning address", code="bad_address")
    name, domain = address.strip().lower().split("@")
    if not _USERNAME.match(name) or not _DOMAIN.match(domain) or "." not in domain.split(":")[0]:
        raise LnurlError("not a lightning address", code="bad_address")
    host = domain.split(":")[0]
    scheme = "http" if host.endswith(".onion") else "https"
    return f"{scheme}://{domain}/.well-known/lnurlp/{name}"


def decode_lnurl(lnurl: str) -> str:
    """LUD-01: the URL inside a bech32 ``lnurl1...`` string (any case, ``lightning:`` allowed)."""
    if not isinstance(lnurl, str) or len(lnurl) > MAX_LNURL_CHARS:
        raise LnurlError("not a bech32 LNURL", code="malformed")
    text = lnurl.strip()
    if text.lower().startswith("lightning:"):
        text = text[len("lightning:") :]
    hrp, data = bech32.bech32_decode(text)
    if hrp != "lnurl" or data is None:
        raise LnurlError("not a bech32 LNURL", code="malformed")
    raw = bech32.convertbits(data, 5, 8, False)
    if raw is None:
        raise LnurlError("not a bech32 LNURL", code="malformed")
    try:
        return bytes(raw).decode()
    except UnicodeDecodeError as exc:
        raise LnurlError("LNURL does not hold a URL", code="malformed") from exc


def encode_lnurl(url: str) -> str:
    """LUD-01: a URL as a lowercase bech32 ``lnurl1...`` string."""
    data = bech32.convertbits(url.encode(), 8, 5, True)
    if data is None:
        raise LnurlError("URL cannot be encoded", code="malformed")
    return str(bech32.bech32_encode("lnurl", data))


def _malformed(message: str) -> LnurlError:
    return LnurlError(message, code="malformed")


class LnurlClient:
    """See the module docstring."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        insecure_hosts: frozenset[str] = frozenset(),
        timeout_s: float = 15.0,
    ) -> None:
        self._http = http
        self._insecure_hosts = insecure_hosts
        self._timeout_s = timeout_s

    def _check_url(self, url: str) -> str:
        if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
            raise LnurlError("URL holds spaces or control characters", code="bad_address")
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise LnurlError("not a URL", code="bad_address") from exc
        netloc = (parts.netloc or "").lower()
        host = (parts.hostname or "").lower()
        if netloc in self._insecure_hosts:
            if parts.scheme not in ("http", "https"):
                raise LnurlError("unsupported URL scheme", code="bad_address")
            return url
        if not host or parts.username or parts.password:
            raise LnurlError("URL has no usable host", code="bad_address")
        if host.endswith(".onion"):
            if parts.scheme not in ("http", "https"):
                raise LnurlError("unsupported URL scheme", code="bad_address")
            return url
        if parts.scheme != "https":
            raise LnurlError("LNURL services must use https", code="bad_address")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            pass
        else:
            raise LnurlError("LNURL host must be a domain name", code="bad_address")
        if host == "localhost" or host.endswith(".localhost") or "." not in host:
            raise LnurlError("LNURL host must be a public domain name", code="bad_address")
        return url

    async def _get_json(self, url: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        self._check_url(url)
        if params:
            url = url + ("&" if urlsplit(url).query else "?") + urlencode(params)
        try:
            async with self._http.stream("GET", url, timeout=self._timeout_s) as resp:
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise LnurlError("LNURL answer is too large", code="malformed")
                    chunks.append(chunk)
                status = resp.status_code
        except httpx.InvalidURL as exc:  # not an HTTPError: whatever httpx refuses to send
            raise LnurlError("not a URL httpx can request", code="bad_address") from exc
        except httpx.HTTPError as exc:
            raise LnurlError(f"LNURL service unreachable ({type(exc).__name__})",
                             code="unreachable") from exc
        data = load_json(b"".join(chunks), max_chars=MAX_RESPONSE_BYTES, error=_malformed,
                         what=f"LNURL answer (HTTP {status})")
        if not isinstance(data, dict):
            raise LnurlError("LNURL service sent an unexpected JSON shape", code="malformed")
        if str(data.get("status", "")).upper() == "ERROR":
            reason = str(data.get("reason", "no reason"))[:200]
            raise LnurlError(f"LNURL service refused: {reason}", code="service_error")
        if status >= 400:
            raise LnurlError(f"LNURL service error (HTTP {status})", code="service_error")
        return data

    async def fetch_pay_request(self, url: str) -> PayRequest:
        data = await self._get_json(url)
        if data.get("tag") != "payRequest":
            raise LnurlError("not an LNURL-pay endpoint", code="malformed")
        callback = data.get("callback")
        metadata = data.get("metadata")
        low = data.get("minSendable")
        high = data.get("maxSendable")
        if not isinstance(callback, str) or not isinstance(metadata, str):
            raise LnurlError("payRequest lacks callback or metadata", code="malformed")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
            raise LnurlError("payRequest amounts are not integers", code="malformed")
        assert isinstance(low, int) and isinstance(high, int)
        if low < 1 or low > high:
            raise LnurlError("payRequest amount range is invalid", code="malformed")
        self._check_url(callback)
        comment_allowed = data.get("commentAllowed", 0)
        nostr_pubkey = data.get("nostrPubkey")
        allows_nostr = data.get("allowsNostr") is True
        if nostr_pubkey is not None and (
            not isinstance(nostr_pubkey, str) or len(nostr_pubkey) != 64
        ):
            raise LnurlError("payRequest nostrPubkey is malformed", code="malformed")
        return PayRequest(
            callback=callback,
            min_sendable_msat=low,
            max_sendable_msat=high,
            metadata=metadata,
            comment_allowed=comment_allowed if isinstance(comment_allowed, int) else 0,
            allows_nostr=allows_nostr and nostr_pubkey is not None,
            nostr_pubkey=nostr_pubkey.lower() if isinstance(nostr_pubkey, str) else None,
        )

    async def fetch_invoice(
        self,
        pay: PayRequest,
        amount_msat: int,
        *,
        zap_request_json: str | None = None,
        comment: str | None = None,
        network: str | None = None,
    ) -> LnurlInvoice:
        if not pay.min_sendable_msat <= amount_msat <= pay.max_sendable_msat:
            raise LnurlError(
                f"{amount_msat} msat is outside {pay.min_sendable_msat}..{pay.max_sendable_msat}",
                code="out_of_range",
            )
        params = {"amount": str(amount_msat)}
        if zap_request_json is not None:
            if not pay.allows_nostr:
                raise LnurlError("this LNURL service does not accept zaps", code="no_zaps")
            params["nostr"] = zap_request_json
        if comment and pay.comment_allowed > 0:
            params["comment"] = comment[: pay.comment_allowed]
        data = await self._get_json(pay.callback, params)
        pr = data.get("pr")
        if not isinstance(pr, str):
            raise LnurlError("callback answer lacks an invoice", code="malformed")
        try:
            decoded = decode_invoice(pr)
        except InvalidInvoice as exc:
            raise LnurlError("callback invoice does not decode", code="malformed") from exc
        if decoded.amount_msat != amount_msat:
            raise LnurlError(
                f"callback invoice asks {decoded.amount_msat} msat, not {amount_msat}",
                code="amount_mismatch",
            )
        committed = zap_request_json if zap_request_json is not None else pay.metadata
        expected = hashlib.sha256(committed.encode()).hexdigest()
        if decoded.description_hash != expected:
            raise LnurlError("callback invoice description hash does not match",
                             code="description_hash_mismatch")
        if network is not None and decoded.network != network:
            raise LnurlError(f"callback invoice is for network {decoded.network!r}",
                             code="wrong_network")
        verify_url = data.get("verify")
        if isinstance(verify_url, str):
            try:
                self._check_url(verify_url)
            except LnurlError:
                verify_url = None
        else:
            verify_url = None
        return LnurlInvoice(bolt11=decoded.bolt11, invoice=decoded, verify_url=verify_url)

    async def invoice_for_address(
        self,
        address: str,
        amount_msat: int,
        *,
        zap_request_json: str | None = None,
        comment: str | None = None,
        network: str | None = None,
    ) -> LnurlInvoice:
        url = self.address_url(address)
        pay = await self.fetch_pay_request(url)
        return await self.fetch_invoice(
            pay, amount_msat, zap_request_json=zap_request_json, comment=comment, network=network
        )

    def address_url(self, address: str) -> str:
        """Like :func:`lightning_address_url`, but ``http`` for the allowed insecure hosts."""
        url = lightning_address_url(address)
        domain = address.strip().lower().split("@")[1]
        if domain in self._insecure_hosts:
            url = "http://" + url.split("://", 1)[1]
        return url

    async def verify(self, verify_url: str, *, payment_hash: str | None = None) -> VerifyResult:
        data = await self._get_json(verify_url)
        settled = data.get("settled")
        if not isinstance(settled, bool):
            raise LnurlError("verify answer lacks settled", code="malformed")
        preimage = data.get("preimage")
        pr = data.get("pr")
        invoice: DecodedInvoice | None = None
        if pr is not None:
            if not isinstance(pr, str):
                raise LnurlError("verify answer pr is not a string", code="malformed")
            try:
                invoice = decode_invoice(pr)
            except InvalidInvoice as exc:
                raise LnurlError("verify answer pr does not decode", code="malformed") from exc
            if payment_hash is not None and invoice.payment_hash != payment_hash.lower():
                raise LnurlError("verify answer is for another payment hash",
                                 code="hash_mismatch")
        return VerifyResult(settled=settled,
                            preimage=preimage if isinstance(preimage, str) else None,
                            invoice=invoice)
