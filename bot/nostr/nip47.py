"""NIP-47 (Nostr Wallet Connect) messages, pure: no sockets, no asyncio.

What lives here:

- the connection URI (``nostr+walletconnect://<wallet pubkey>?relay=...&secret=...``, and the
  form without ``//`` that nostr-tools also accepts) parsed into :class:`NwcUri`;
- the info event (kind 13194) read into :class:`WalletInfo`, and the encryption choice that
  follows from it (NIP-44 v2 when the wallet lists it, else NIP-04; no tag means NIP-04);
- the JSON payloads of requests, responses and notifications, encoded and decoded;
- every NIP-47 error code as :class:`ErrorCode` (an unknown code from a peer becomes ``OTHER``).

Decoding a payload a peer sent never raises anything but :class:`Nip47Error` (a
``NostrError``, so a ``ValueError``),
with a message that never contains the connection secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import parse_qs

from bot.nostr import nip04, nip44
from bot.nostr.errors import NostrError
from bot.nostr.event import Event, sign_event
from bot.nostr.hexutil import is_hex
from bot.nostr.keys import Keys
from bot.nostr.nip65 import is_relay_url
from bot.untrusted import load_json

INFO_KIND = 13194
REQUEST_KIND = 23194
RESPONSE_KIND = 23195
NOTIFICATION_KIND = 23197
LEGACY_NOTIFICATION_KIND = 23196

URI_SCHEME = "nostr+walletconnect"
MAX_PAYLOAD_CHARS = 65_536


class Nip47Error(NostrError):
    """A NIP-47 URI, info event or payload that does not follow the spec."""


class Encryption(Enum):
    """The encryption schemes NIP-47 names in its ``encryption`` tag."""

    NIP44_V2 = "nip44_v2"
    NIP04 = "nip04"


class ErrorCode(Enum):
    """Every error code NIP-47 defines."""

    RATE_LIMITED = "RATE_LIMITED"
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    RESTRICTED = "RESTRICTED"
    UNAUTHORIZED = "UNAUTHORIZED"
    INTERNAL = "INTERNAL"
    UNSUPPORTED_ENCRYPTION = "UNSUPPORTED_ENCRYPTION"
    OTHER = "OTHER"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    NOT_FOUND = "NOT_FOUND"

    @classmethod
    def from_wire(cls, code: object) -> ErrorCode:
        """The code a peer sent; anything unknown is ``OTHER``."""
        if isinstance(code, str):
            for member in cls:
                if member.value == code:
                    return member
        return cls.OTHER


@dataclass(frozen=True)
class NwcUri:
    """A parsed connection URI. ``repr`` hides the secret."""

    wallet_pubkey: str
    relays: tuple[str, ...]
    secret: str = field(repr=False)
    lud16: str | None = None

    def to_uri(self) -> str:
        """The URI again, in the ``nostr+walletconnect://`` form."""
        from urllib.parse import quote

        query = [f"relay={quote(r, safe='')}" for r in self.relays]
        query.append(f"secret={self.secret}")
        if self.lud16 is not None:
            query.append(f"lud16={quote(self.lud16, safe='@')}")
        return f"{URI_SCHEME}://{self.wallet_pubkey}?{'&'.join(query)}"


def parse_nwc_uri(uri: str) -> NwcUri:
    """Parse both URI forms (with and without ``//``); raise :class:`Nip47Error` if invalid."""
    if not isinstance(uri, str):
        raise Nip47Error("connection URI must be a string")
    try:
        uri.encode("utf-8")
    except UnicodeEncodeError:  # os.environ decodes bad bytes to lone surrogates
        raise Nip47Error("connection URI is not valid text") from None
    text = uri.strip()
    prefix = URI_SCHEME + ":"
    if not text.lower().startswith(prefix):
        raise Nip47Error(f"connection URI must start with {URI_SCHEME}://")
    rest = text[len(prefix) :]
    if rest.startswith("//"):
        rest = rest[2:]
    pubkey, sep, query = rest.partition("?")
    pubkey = pubkey.rstrip("/").lower()
    if not is_hex(pubkey, 64):
        raise Nip47Error("wallet service pubkey must be 32 bytes of hex")
    if not sep:
        raise Nip47Error("connection URI has no relay and secret parameters")
    params = parse_qs(query, keep_blank_values=True)
    relays = tuple(r for r in params.get("relay", []) if r)
    if not relays:
        raise Nip47Error("connection URI names no relay")
    if not all(is_relay_url(relay) for relay in relays):
        raise Nip47Error("connection URI relay is not a ws:// or wss:// URL")
    secrets = params.get("secret", [])
    if len(secrets) != 1 or not is_hex(secrets[0].lower(), 64):
        raise Nip47Error("connection URI secret must be one 32-byte hex value")
    lud16_values = params.get("lud16", [])
    lud16 = lud16_values[0] if lud16_values and lud16_values[0] else None
    return NwcUri(
        wallet_pubkey=pubkey, relays=relays, secret=secrets[0].lower(), lud16=lud16
    )


@dataclass(frozen=True)
class WalletInfo:
    """What a wallet service's info event (kind 13194) says it supports."""

    methods: frozenset[str]
    notifications: frozenset[str]
    encryptions: frozenset[Encryption]

    def preferred_encryption(self) -> Encryption:
        """NIP-44 v2 when the wallet lists it, otherwise NIP-04 (the legacy default)."""
        if Encryption.NIP44_V2 in self.encryptions:
            return Encryption.NIP44_V2
        return Encryption.NIP04


def parse_info(content: str, tags: Sequence[Sequence[str]]) -> WalletInfo:
    """Read an info event's content and tags. No ``encryption`` tag means NIP-04 only."""
    methods = frozenset(content.split())
    notifications: frozenset[str] = frozenset()
    encryptions: set[Encryption] = set()
    saw_encryption_tag = False
    for tag in tags:
        if len(tag) < 2:
            continue
        if tag[0] == "notifications":
            notifications = frozenset(tag[1].split())
        elif tag[0] == "encryption":
            saw_encryption_tag = True
            for word in tag[1].split():
                for scheme in Encryption:
                    if scheme.value == word:
                        encryptions.add(scheme)
    if not saw_encryption_tag:
        encryptions.add(Encryption.NIP04)
    if not encryptions:
        raise Nip47Error("info event lists no encryption scheme we speak")
    return WalletInfo(methods, notifications, frozenset(encryptions))


def request_encryption(tags: Sequence[Sequence[str]]) -> Encryption | None:
    """The scheme a request's ``encryption`` tag names; NIP-04 if absent; None if unknown."""
    for tag in tags:
        if len(tag) >= 2 and tag[0] == "encryption":
            for scheme in Encryption:
                if scheme.value == tag[1].strip():
                    return scheme
            return None
    return Encryption.NIP04


# --- payloads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class ErrorInfo:
    code: ErrorCode
    message: str


@dataclass(frozen=True)
class Response:
    result_type: str
    result: Mapping[str, Any] | None
    error: ErrorInfo | None


@dataclass(frozen=True)
class Notification:
    notification_type: str
    notification: Mapping[str, Any]


def _load_object(text: str, what: str) -> dict[str, Any]:
    if not isinstance(text, str):
        raise Nip47Error(f"{what} payload is not a string")
    value = load_json(text, max_chars=MAX_PAYLOAD_CHARS, error=Nip47Error, what=f"{what} payload")
    if not isinstance(value, dict):
        raise Nip47Error(f"{what} payload is not a JSON object")
    return value


def encode_request(method: str, params: Mapping[str, Any]) -> str:
    return json.dumps({"method": method, "params": dict(params)}, separators=(",", ":"))


def decode_request(text: str) -> Request:
    obj = _load_object(text, "request")
    method = obj.get("method")
    params = obj.get("params", {})
    if not isinstance(method, str) or not method:
        raise Nip47Error("request has no method")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise Nip47Error("request params is not an object")
    return Request(method, params)


def encode_result(result_type: str, result: Mapping[str, Any]) -> str:
    payload = {"result_type": result_type, "error": None, "result": dict(result)}
    return json.dumps(payload, separators=(",", ":"))


def encode_error(result_type: str, code: ErrorCode, message: str) -> str:
    payload = {
        "result_type": result_type,
        "error": {"code": code.value, "message": message},
        "result": None,
    }
    return json.dumps(payload, separators=(",", ":"))


def decode_response(text: str) -> Response:
    obj = _load_object(text, "response")
    result_type = obj.get("result_type")
    if not isinstance(result_type, str) or not result_type:
        raise Nip47Error("response has no result_type")
    raw_error = obj.get("error")
    error: ErrorInfo | None = None
    if raw_error is not None:
        if not isinstance(raw_error, dict):
            raise Nip47Error("response error is not an object")
        message = raw_error.get("message")
        error = ErrorInfo(
            ErrorCode.from_wire(raw_error.get("code")),
            message if isinstance(message, str) else "",
        )
    raw_result = obj.get("result")
    if raw_result is not None and not isinstance(raw_result, dict):
        raise Nip47Error("response result is not an object")
    if error is None and raw_result is None:
        raise Nip47Error("response has neither result nor error")
    return Response(result_type, raw_result if error is None else None, error)


def encode_notification(notification_type: str, notification: Mapping[str, Any]) -> str:
    payload = {"notification_type": notification_type, "notification": dict(notification)}
    return json.dumps(payload, separators=(",", ":"))


def decode_notification(text: str) -> Notification:
    obj = _load_object(text, "notification")
    kind = obj.get("notification_type")
    body = obj.get("notification")
    if not isinstance(kind, str) or not kind:
        raise Nip47Error("notification has no notification_type")
    if not isinstance(body, dict):
        raise Nip47Error("notification body is not an object")
    return Notification(kind, body)


# --- transactions -----------------------------------------------------------------------------


class TransactionState(Enum):
    PENDING = "pending"
    SETTLED = "settled"
    ACCEPTED = "accepted"
    EXPIRED = "expired"
    FAILED = "failed"


@dataclass(frozen=True)
class Transaction:
    """One invoice or payment as ``make_invoice``/``lookup_invoice``/notifications describe it."""

    payment_hash: str
    amount_msat: int
    state: TransactionState | None
    invoice: str | None = None
    preimage: str | None = None
    fees_paid_msat: int = 0
    created_at: int | None = None
    expires_at: int | None = None
    settled_at: int | None = None
    incoming: bool = True
    description: str | None = None
    description_hash: str | None = None


def _opt_int(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Nip47Error(f"transaction field {key} is not a non-negative integer")
    return value


def _opt_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Nip47Error(f"transaction field {key} is not a string")
    return value


def parse_transaction(obj: Mapping[str, Any]) -> Transaction:
    """Read a transaction object; raise :class:`Nip47Error` if a field has the wrong shape."""
    payment_hash = _opt_str(obj, "payment_hash")
    if payment_hash is None or not is_hex(payment_hash.lower(), 64):
        raise Nip47Error("transaction has no valid payment_hash")
    amount = _opt_int(obj, "amount")
    raw_state = obj.get("state")
    state: TransactionState | None = None
    if raw_state is not None:
        try:
            state = TransactionState(raw_state)
        except ValueError as exc:
            raise Nip47Error("transaction state is unknown") from exc
    preimage = _opt_str(obj, "preimage")
    if preimage is not None and not is_hex(preimage.lower(), 64):
        raise Nip47Error("transaction preimage is not 32 bytes of hex")
    return Transaction(
        payment_hash=payment_hash.lower(),
        amount_msat=amount or 0,
        state=state,
        invoice=_opt_str(obj, "invoice"),
        preimage=preimage.lower() if preimage else None,
        fees_paid_msat=_opt_int(obj, "fees_paid") or 0,
        created_at=_opt_int(obj, "created_at"),
        expires_at=_opt_int(obj, "expires_at"),
        settled_at=_opt_int(obj, "settled_at"),
        incoming=obj.get("type", "incoming") != "outgoing",
        description=_opt_str(obj, "description"),
        description_hash=_opt_str(obj, "description_hash"),
    )


def transaction_to_json(tx: Transaction) -> dict[str, Any]:
    """The wire shape of a transaction (used by wallet services and tests)."""
    out: dict[str, Any] = {
        "type": "incoming" if tx.incoming else "outgoing",
        "payment_hash": tx.payment_hash,
        "amount": tx.amount_msat,
        "fees_paid": tx.fees_paid_msat,
    }
    if tx.state is not None:
        out["state"] = tx.state.value
    for key, value in (
        ("invoice", tx.invoice),
        ("preimage", tx.preimage),
        ("created_at", tx.created_at),
        ("expires_at", tx.expires_at),
        ("settled_at", tx.settled_at),
        ("description", tx.description),
        ("description_hash", tx.description_hash),
    ):
        if value is not None:
            out[key] = value
    return out


# --- events -----------------------------------------------------------------------------------


def seal(keys: Keys, peer_pubkey: str, scheme: Encryption, plaintext: str) -> str:
    """Encrypt a payload for ``peer_pubkey`` with the chosen scheme."""
    if scheme is Encryption.NIP44_V2:
        return nip44.encrypt(plaintext, keys.conversation_key(peer_pubkey))
    return nip04.encrypt(keys.secret_hex, peer_pubkey, plaintext)


def unseal(keys: Keys, peer_pubkey: str, scheme: Encryption, content: str) -> str:
    """Decrypt a payload from ``peer_pubkey``; any failure is a :class:`Nip47Error`."""
    try:
        if scheme is Encryption.NIP44_V2:
            return nip44.decrypt(content, keys.conversation_key(peer_pubkey))
        return nip04.decrypt(keys.secret_hex, peer_pubkey, content)
    except NostrError as exc:
        raise Nip47Error(f"cannot decrypt {scheme.value} payload") from exc


def scheme_of_content(content: str) -> Encryption:
    """NIP-04 payloads carry ``?iv=``; anything else is taken as NIP-44."""
    return Encryption.NIP04 if "?iv=" in content else Encryption.NIP44_V2


def request_event(
    client_keys: Keys,
    wallet_pubkey: str,
    scheme: Encryption,
    method: str,
    params: Mapping[str, Any],
    *,
    expiration: int | None = None,
    created_at: int | None = None,
) -> Event:
    """A signed kind-23194 request, encrypted for the wallet service."""
    tags: list[list[str]] = [["p", wallet_pubkey], ["encryption", scheme.value]]
    if expiration is not None:
        tags.append(["expiration", str(expiration)])
    content = seal(client_keys, wallet_pubkey, scheme, encode_request(method, params))
    return sign_event(client_keys, REQUEST_KIND, content, tags, created_at)


def response_event(
    wallet_keys: Keys, client_pubkey: str, request_id: str, scheme: Encryption, payload: str
) -> Event:
    """A signed kind-23195 response to ``request_id`` (``payload`` from encode_result/error)."""
    content = seal(wallet_keys, client_pubkey, scheme, payload)
    return sign_event(
        wallet_keys, RESPONSE_KIND, content, [["p", client_pubkey], ["e", request_id]]
    )


def notification_event(
    wallet_keys: Keys, client_pubkey: str, scheme: Encryption, payload: str
) -> Event:
    """A signed notification: kind 23197 for NIP-44, the legacy 23196 for NIP-04."""
    kind = NOTIFICATION_KIND if scheme is Encryption.NIP44_V2 else LEGACY_NOTIFICATION_KIND
    content = seal(wallet_keys, client_pubkey, scheme, payload)
    return sign_event(wallet_keys, kind, content, [["p", client_pubkey]])


def info_event(
    wallet_keys: Keys,
    methods: Sequence[str],
    encryptions: Sequence[Encryption],
    notifications: Sequence[str] = (),
) -> Event:
    """A signed kind-13194 info event. An empty ``encryptions`` omits the tag (NIP-04 only)."""
    tags: list[list[str]] = []
    if encryptions:
        tags.append(["encryption", " ".join(e.value for e in encryptions)])
    if notifications:
        tags.append(["notifications", " ".join(notifications)])
    return sign_event(wallet_keys, INFO_KIND, " ".join(methods), tags)
