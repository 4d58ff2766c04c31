"""NIP-57 zaps, pure: building zap requests (kind 9734), checking them the way an LNURL server
must (appendix D), and validating zap receipts (kind 9735) per appendix F.

A receipt is accepted (:class:`ValidZap`) only when all of these hold:

- it is a kind-9735 event signed by the ``nostrPubkey`` the recipient's LNURL endpoint advertises;
- it has exactly one ``bolt11`` tag that decodes (``bot.wallets.bolt11.decode_invoice``, the one
  bolt11 decoder: its length cap runs before the library, whose cost grows with the string) and
  carries an amount, and exactly one ``description`` tag;
- ``sha256(description)`` equals the invoice's description hash;
- the description is a valid, correctly signed kind-9734 zap request with exactly one ``p`` tag,
  equal to the recipient, and at most one ``e`` tag;
- the receipt's own ``p`` tag is that same recipient (and its ``P``, if any, the zapper);
- the invoice amount equals the zap request's ``amount`` tag, if it has one (appendix F checks
  it "if present"; without one the invoice amount is the zap's amount);
- the request's ``lnurl`` tag, when present and when the recipient's lnurl is known, matches it;
- a ``preimage`` tag, when present, hashes to the invoice's payment hash.

Anything else is a :class:`ZapInvalid` value with a :class:`ZapRejection` reason; nothing here
raises on malformed input.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from bot.nostr.errors import MalformedEvent, NostrError
from bot.nostr.event import Event, sign_event
from bot.nostr.hexutil import is_hex
from bot.nostr.keys import Keys
from bot.untrusted import load_json
from bot.wallets.base import InvalidInvoice
from bot.wallets.bolt11 import decode_invoice

ZAP_REQUEST_KIND = 9734
ZAP_RECEIPT_KIND = 9735
MAX_DESCRIPTION_CHARS = 16_384


class ZapRejection(StrEnum):
    """Why a zap receipt (or a zap request) was refused."""

    NOT_A_RECEIPT = "not_a_receipt"
    WRONG_SIGNER = "wrong_signer"
    MISSING_BOLT11 = "missing_bolt11"
    BAD_BOLT11 = "bad_bolt11"
    NO_AMOUNT = "no_amount"
    MISSING_DESCRIPTION = "missing_description"
    DESCRIPTION_HASH_MISMATCH = "description_hash_mismatch"
    BAD_ZAP_REQUEST = "bad_zap_request"
    NOT_EXACTLY_ONE_P = "not_exactly_one_p"
    FOREIGN_P = "foreign_p"
    RECEIPT_P_MISMATCH = "receipt_p_mismatch"
    SENDER_MISMATCH = "sender_mismatch"
    TOO_MANY_E = "too_many_e"
    AMOUNT_MISMATCH = "amount_mismatch"
    LNURL_MISMATCH = "lnurl_mismatch"
    PREIMAGE_MISMATCH = "preimage_mismatch"
    MISSING_RELAYS = "missing_relays"


@dataclass(frozen=True, slots=True)
class ZapInvalid:
    """A refused receipt or request: the reason, and a short detail for the log."""

    reason: ZapRejection
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ZapRequestInfo:
    """What a checked zap request says."""

    request: Event
    recipient_pubkey: str
    amount_msat: int | None
    event_id: str | None
    relays: tuple[str, ...]
    lnurl: str | None


@dataclass(frozen=True, slots=True)
class ValidZap:
    """A receipt that passed appendix F validation."""

    receipt_id: str
    payment_hash: str
    amount_msat: int
    zapper_pubkey: str
    zap_request_id: str
    event_id: str | None
    bolt11: str
    comment: str
    paid_at: int
    preimage: str | None


def _single_value(event: Event, name: str) -> str | ZapInvalid | None:
    found = event.tag_values(name)
    if not found:
        return None
    if len(found) > 1:
        return ZapInvalid(ZapRejection.BAD_ZAP_REQUEST, f"more than one {name} tag")
    return found[0]


def build_zap_request(
    keys: Keys,
    *,
    recipient_pubkey: str,
    amount_msat: int,
    relays: Sequence[str],
    lnurl: str | None = None,
    event_id: str | None = None,
    content: str = "",
    created_at: int | None = None,
) -> Event:
    """A signed kind-9734 zap request (appendix A). It is sent to the LNURL callback, never
    published."""
    if isinstance(amount_msat, bool) or not isinstance(amount_msat, int) or amount_msat <= 0:
        raise ValueError("amount_msat must be a positive integer")
    if not is_hex(recipient_pubkey, 64):
        raise ValueError("recipient pubkey must be 64 lowercase hex characters")
    if not relays:
        raise ValueError("a zap request needs at least one relay for the receipt")
    tags: list[list[str]] = [
        ["relays", *relays],
        ["amount", str(amount_msat)],
        ["p", recipient_pubkey],
    ]
    if lnurl is not None:
        tags.append(["lnurl", lnurl])
    if event_id is not None:
        if not is_hex(event_id, 64):
            raise ValueError("event id must be 64 lowercase hex characters")
        tags.append(["e", event_id])
    return sign_event(
        keys,
        kind=ZAP_REQUEST_KIND,
        content=content,
        tags=tags,
        created_at=int(time.time()) if created_at is None else created_at,
    )


def check_zap_request(
    request: Event,
    *,
    amount_msat: int | None = None,
    recipient_pubkey: str | None = None,
) -> ZapRequestInfo | ZapInvalid:
    """Appendix D: what an LNURL server checks before issuing a zap invoice.

    ``request`` has already had its id and signature verified (``Event.from_dict``).
    ``amount_msat`` is the callback's ``amount`` parameter; ``recipient_pubkey`` when given must
    be the single ``p`` tag.
    """
    if request.kind != ZAP_REQUEST_KIND:
        return ZapInvalid(ZapRejection.BAD_ZAP_REQUEST, "zap request is not kind 9734")
    if not request.tags:
        return ZapInvalid(ZapRejection.BAD_ZAP_REQUEST, "zap request has no tags")
    p_values = request.tag_values("p")
    if len(p_values) != 1:
        return ZapInvalid(ZapRejection.NOT_EXACTLY_ONE_P, f"{len(p_values)} p tags")
    recipient = p_values[0]
    if not is_hex(recipient, 64):
        return ZapInvalid(ZapRejection.BAD_ZAP_REQUEST, "p tag is not a hex pubkey")
    if recipient_pubkey is not None and recipient != recipient_pubkey:
        return ZapInvalid(ZapRejection.FOREIGN_P, "zap request is for another pubkey")
    e_values = request.tag_values("e")
    if len(e_values) > 1:
        return ZapInvalid(ZapRejection.TOO_MANY_E, f"{len(e_values)} e tags")
    event_id = e_values[0] if e_values else None
    if event_id is not None and not is_hex(event_id, 64):
        return ZapInvalid(ZapRejection.BAD_ZAP_REQUEST, "e tag is not an event id")
    if sum(1 for t in request.tags if t and t[0] == "P") > 1:
        return ZapInvalid(ZapRejection.BAD_ZAP_REQUEST, "more than one P tag")
    relays = tuple(r for t in request.tags if t and t[0] == "relays" for r in t[1:] if r)
    if not relays:
        return ZapInvalid(ZapRejection.MISSING_RELAYS, "zap request names no relay")
    raw_amount = _single_value(request, "amount")
    if isinstance(raw_amount, ZapInvalid):
        return raw_amount
    tagged_amount: int | None = None
    if raw_amount is not None:
        if not raw_amount.isdecimal() or len(raw_amount) > 20:
            return ZapInvalid(ZapRejection.BAD_ZAP_REQUEST, "amount tag is not an integer")
        tagged_amount = int(raw_amount)
        if amount_msat is not None and tagged_amount != amount_msat:
            return ZapInvalid(ZapRejection.AMOUNT_MISMATCH, "amount tag differs from amount")
    lnurl = _single_value(request, "lnurl")
    if isinstance(lnurl, ZapInvalid):
        return lnurl
    return ZapRequestInfo(
        request=request,
        recipient_pubkey=recipient,
        amount_msat=tagged_amount,
        event_id=event_id,
        relays=relays,
        lnurl=lnurl,
    )


def validate_zap_receipt(
    receipt: Event,
    *,
    provider_pubkey: str,
    recipient_pubkey: str,
    recipient_lnurl: str | None = None,
) -> ValidZap | ZapInvalid:
    """Appendix F validation of a receipt whose id and signature were already verified."""
    if receipt.kind != ZAP_RECEIPT_KIND:
        return ZapInvalid(ZapRejection.NOT_A_RECEIPT, f"kind {receipt.kind}")
    if receipt.pubkey != provider_pubkey:
        return ZapInvalid(ZapRejection.WRONG_SIGNER, "receipt not signed by our LNURL provider")

    bolt11_values = receipt.tag_values("bolt11")
    if len(bolt11_values) != 1:
        return ZapInvalid(ZapRejection.MISSING_BOLT11, f"{len(bolt11_values)} bolt11 tags")
    invoice_text = bolt11_values[0]
    try:
        invoice = decode_invoice(invoice_text)
    except InvalidInvoice as exc:
        return ZapInvalid(ZapRejection.BAD_BOLT11, str(exc))
    if invoice.amount_msat is None:
        return ZapInvalid(ZapRejection.NO_AMOUNT, "invoice carries no amount")
    amount_msat = invoice.amount_msat
    payment_hash = invoice.payment_hash.lower()
    if not is_hex(payment_hash, 64):
        return ZapInvalid(ZapRejection.BAD_BOLT11, "invoice has no payment hash")

    desc_values = receipt.tag_values("description")
    if len(desc_values) != 1:
        return ZapInvalid(ZapRejection.MISSING_DESCRIPTION, f"{len(desc_values)} description tags")
    description = desc_values[0]
    if len(description) > MAX_DESCRIPTION_CHARS:
        return ZapInvalid(ZapRejection.BAD_ZAP_REQUEST, "description too large")
    description_hash = hashlib.sha256(description.encode("utf-8")).hexdigest()
    invoice_hash = invoice.description_hash
    if not isinstance(invoice_hash, str) or invoice_hash.lower() != description_hash:
        return ZapInvalid(
            ZapRejection.DESCRIPTION_HASH_MISMATCH, "sha256(description) != invoice hash"
        )

    try:
        request = Event.from_dict(load_json(description, max_chars=MAX_DESCRIPTION_CHARS,
                                            error=MalformedEvent, what="zap request"))
    except NostrError as exc:
        return ZapInvalid(ZapRejection.BAD_ZAP_REQUEST, str(exc))
    checked = check_zap_request(request)
    if isinstance(checked, ZapInvalid):
        return checked
    if checked.recipient_pubkey != recipient_pubkey:
        return ZapInvalid(ZapRejection.FOREIGN_P, "zap request is for another pubkey")
    receipt_p = receipt.tag_values("p")
    if receipt_p != [recipient_pubkey]:
        return ZapInvalid(ZapRejection.RECEIPT_P_MISMATCH, "receipt p tag is not the recipient")
    receipt_sender = receipt.tag_values("P")
    if receipt_sender and receipt_sender != [request.pubkey]:
        return ZapInvalid(ZapRejection.SENDER_MISMATCH, "receipt P tag is not the zapper")
    if checked.amount_msat is not None and checked.amount_msat != amount_msat:
        return ZapInvalid(ZapRejection.AMOUNT_MISMATCH, "invoice amount != zap request amount")
    if (
        recipient_lnurl is not None
        and checked.lnurl is not None
        and checked.lnurl.lower() != recipient_lnurl.lower()
    ):
        return ZapInvalid(ZapRejection.LNURL_MISMATCH, "zap request lnurl is not ours")

    preimage = _single_value(receipt, "preimage")
    if isinstance(preimage, ZapInvalid):
        return ZapInvalid(ZapRejection.PREIMAGE_MISMATCH, "more than one preimage tag")
    if preimage is not None:
        try:
            preimage_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        except ValueError:
            return ZapInvalid(ZapRejection.PREIMAGE_MISMATCH, "preimage is not hex")
        if preimage_hash != payment_hash:
            return ZapInvalid(ZapRejection.PREIMAGE_MISMATCH, "sha256(preimage) != payment hash")

    return ValidZap(
        receipt_id=receipt.id,
        payment_hash=payment_hash,
        amount_msat=amount_msat,
        zapper_pubkey=request.pubkey,
        zap_request_id=request.id,
        event_id=checked.event_id,
        bolt11=invoice_text,
        comment=request.content,
        paid_at=receipt.created_at,
        preimage=preimage.lower() if preimage is not None else None,
    )


def build_zap_receipt(
    provider_keys: Keys,
    *,
    zap_request: Event,
    description: str,
    bolt11_invoice: str,
    paid_at: int,
    preimage: str | None = None,
) -> Event:
    """A signed kind-9735 receipt (appendix E), as an LNURL provider publishes it.

    ``description`` is the exact zap-request JSON the invoice's description hash commits to.
    """
    tags: list[list[str]] = []
    for name in ("p", "e", "a", "k"):
        tags.extend([name, value] for value in zap_request.tag_values(name))
    tags.append(["P", zap_request.pubkey])
    tags.append(["bolt11", bolt11_invoice])
    tags.append(["description", description])
    if preimage is not None:
        tags.append(["preimage", preimage])
    return sign_event(
        provider_keys, kind=ZAP_RECEIPT_KIND, content="", tags=tags, created_at=paid_at
    )
