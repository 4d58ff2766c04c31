"""Decoding and checking bolt11 payment requests, with the ``bolt11`` library (never by hand).

- :func:`decode_invoice` (text) → :class:`DecodedInvoice`: network (``bc`` mainnet, ``tb``
  testnet, ``tbs`` signet, ``bcrt`` regtest), ``amount_msat`` (None for "any amount"),
  ``payment_hash``, ``description`` or ``description_hash`` (hex), ``created_at``, ``expiry_s``,
  ``expires_at``, ``payee`` (node key, hex). A ``lightning:`` URI prefix is accepted.
  Anything that does not decode raises :class:`~bot.wallets.base.InvalidInvoice` (code
  ``"malformed"``).
- :func:`check_payable` (decoded, amount_msat=, network=, now=) raises ``InvalidInvoice`` with
  code ``"no_amount"``, ``"amount_mismatch"``, ``"wrong_network"`` or ``"expired"`` when the
  invoice is not one we should pay for exactly that amount; :func:`check_network` (decoded,
  network) is its network check alone (``"wrong_network"``).
- :func:`preimage_matches` (preimage, payment_hash): does the preimage prove the payment.
- :func:`encode_invoice` signs a new bolt11 string with a given node key (used by the dev
  wallet and by tests).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import bolt11 as _bolt11
from bolt11.models.tags import TagChar, Tags

from bot.wallets.base import NETWORKS, InvalidInvoice

MAX_INVOICE_CHARS = 4096
"""Longer strings are refused before decoding (route hints rarely exceed ~1,500 chars). The
library's cost grows with the length (about 9 µs a character here): at this cap one decode
holds the event loop for a few tens of milliseconds at most; 100k characters took a second."""

MIN_REMAINING_S = 30
"""An invoice expiring sooner than this is treated as expired when checked before paying."""

_HRP_PICO = re.compile(r"^ln(?:bcrt|bc|tbs|tb)(\d+)p$")


@dataclass(frozen=True, slots=True)
class DecodedInvoice:
    bolt11: str
    network: str
    amount_msat: int | None
    payment_hash: str
    description: str | None
    description_hash: str | None
    created_at: int
    expiry_s: int
    payee: str | None

    @property
    def expires_at(self) -> int:
        return self.created_at + self.expiry_s

    def is_expired(self, now: int, margin_s: int = 0) -> bool:
        return now + margin_s >= self.expires_at

    def matches_description(self, description: str) -> bool:
        """True when the invoice commits to ``description`` (plain or by its sha256)."""
        if self.description_hash is not None:
            digest = hashlib.sha256(description.encode()).hexdigest()
            return digest == self.description_hash
        return self.description == description


def decode_invoice(text: str) -> DecodedInvoice:
    """Decode a bolt11 string; raises :class:`InvalidInvoice` (code ``"malformed"``)."""
    if not isinstance(text, str):
        raise InvalidInvoice("invoice must be a string", code="malformed")
    if len(text) > MAX_INVOICE_CHARS + len("lightning:") + 64:  # room for prefix and spaces
        raise InvalidInvoice(f"invoice longer than {MAX_INVOICE_CHARS} characters",
                             code="malformed")
    cleaned = text.strip()
    if cleaned.lower().startswith("lightning:"):
        cleaned = cleaned[len("lightning:") :]
    cleaned = cleaned.lower()
    if len(cleaned) > MAX_INVOICE_CHARS:
        raise InvalidInvoice(f"invoice longer than {MAX_INVOICE_CHARS} characters",
                             code="malformed")
    if not cleaned.startswith("ln"):
        raise InvalidInvoice("not a bolt11 invoice", code="malformed")
    hrp = cleaned[: cleaned.rfind("1")] if "1" in cleaned else ""
    pico = _HRP_PICO.match(hrp)
    if pico is not None and int(pico.group(1)) % 10 != 0:
        raise InvalidInvoice("amount is not a whole millisatoshi", code="malformed")
    try:
        decoded = _bolt11.decode(cleaned)
        payment_hash = str(decoded.payment_hash)
        amount = decoded.amount_msat
        description_hash = decoded.description_hash
        description = decoded.description
        expiry_s = int(decoded.expiry)
        created_at = int(decoded.date)
        payee = decoded.payee
        currency = str(decoded.currency)
    except Exception as exc:
        raise InvalidInvoice("invoice does not decode", code="malformed") from exc
    if currency not in NETWORKS:
        raise InvalidInvoice("unknown network", code="malformed")
    if amount is not None and int(amount) <= 0:
        raise InvalidInvoice("invoice amount must be positive", code="malformed")
    if len(payment_hash) != 64 or expiry_s <= 0:
        raise InvalidInvoice("invoice fields out of range", code="malformed")
    return DecodedInvoice(
        bolt11=cleaned,
        network=currency,
        amount_msat=int(amount) if amount is not None else None,
        payment_hash=payment_hash,
        description=str(description) if description is not None else None,
        description_hash=str(description_hash) if description_hash is not None else None,
        created_at=created_at,
        expiry_s=expiry_s,
        payee=str(payee) if payee is not None else None,
    )


def preimage_matches(preimage: str, payment_hash: str) -> bool:
    """True when ``sha256(preimage)`` is ``payment_hash`` (both hex); False for bad hex."""
    try:
        return hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == payment_hash
    except ValueError:
        return False


def check_network(invoice: DecodedInvoice, network: str) -> None:
    """Raise :class:`InvalidInvoice` (``wrong_network``) unless ``invoice`` is on ``network``."""
    if invoice.network != network:
        raise InvalidInvoice(
            f"invoice is for network {invoice.network!r}, this wallet is on {network!r}",
            code="wrong_network",
        )


def check_payable(
    invoice: DecodedInvoice,
    *,
    amount_msat: int,
    network: str,
    now: int,
    margin_s: int = MIN_REMAINING_S,
) -> None:
    """Raise :class:`InvalidInvoice` unless ``invoice`` asks exactly ``amount_msat`` on
    ``network`` and stays valid for at least ``margin_s`` more seconds."""
    check_network(invoice, network)
    if invoice.amount_msat is None:
        raise InvalidInvoice("invoice has no amount; send one for the exact amount",
                             code="no_amount")
    if invoice.amount_msat != amount_msat:
        raise InvalidInvoice(
            f"invoice asks {invoice.amount_msat} msat, {amount_msat} msat is owed",
            code="amount_mismatch",
        )
    if invoice.is_expired(now, margin_s):
        raise InvalidInvoice("invoice has expired (or expires too soon)", code="expired")


def encode_invoice(
    *,
    network: str,
    amount_msat: int | None,
    payment_hash: str,
    payment_secret: str,
    created_at: int,
    expiry_s: int,
    node_key_hex: str,
    description: str | None = None,
    description_hash: str | None = None,
) -> str:
    """Sign a bolt11 string with ``node_key_hex``. Exactly one of description / hash;
    ``amount_msat=None`` makes an "any amount" invoice."""
    if network not in NETWORKS:
        raise InvalidInvoice("unknown network", code="malformed")
    if (description is None) == (description_hash is None):
        raise InvalidInvoice("give a description or a description hash", code="malformed")
    tags = Tags()
    tags.add(TagChar.payment_hash, payment_hash)
    tags.add(TagChar.payment_secret, payment_secret)
    if description_hash is not None:
        tags.add(TagChar.description_hash, description_hash)
    else:
        tags.add(TagChar.description, description)
    tags.add(TagChar.expire_time, expiry_s)
    tags.add(TagChar.min_final_cltv_expiry, 18)
    invoice = _bolt11.Bolt11(
        currency=network,
        date=created_at,
        tags=tags,
        amount_msat=_bolt11.MilliSatoshi(amount_msat) if amount_msat else None,
    )
    try:
        return str(_bolt11.encode(invoice, private_key=node_key_hex))
    except Exception as exc:
        raise InvalidInvoice("invoice could not be encoded", code="malformed") from exc
