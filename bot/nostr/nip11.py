"""NIP-11 relay information documents, fetched over HTTP with an injected httpx client.

Only the fields the relay pool uses are typed; unknown fields are ignored. A document that is
not a JSON object, or a field of the wrong type, raises ``RelayInfoError`` (wrongly typed
optional limitation fields are dropped rather than trusted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from bot.nostr.errors import RelayInfoError
from bot.untrusted import load_json

MAX_DOCUMENT_BYTES: Final = 64 * 1024
_INT_LIMITS: Final = (
    "max_message_length", "max_subscriptions", "max_limit", "max_subid_length",
    "max_event_tags", "max_content_length", "min_pow_difficulty", "created_at_lower_limit",
    "created_at_upper_limit", "default_limit",
)
_BOOL_LIMITS: Final = ("auth_required", "payment_required", "restricted_writes")


@dataclass(frozen=True, slots=True)
class Limitation:
    max_message_length: int | None = None
    max_subscriptions: int | None = None
    max_limit: int | None = None
    max_subid_length: int | None = None
    max_event_tags: int | None = None
    max_content_length: int | None = None
    min_pow_difficulty: int | None = None
    created_at_lower_limit: int | None = None
    created_at_upper_limit: int | None = None
    default_limit: int | None = None
    auth_required: bool = False
    payment_required: bool = False
    restricted_writes: bool = False


@dataclass(frozen=True, slots=True)
class RelayInfo:
    name: str | None = None
    description: str | None = None
    pubkey: str | None = None
    software: str | None = None
    version: str | None = None
    supported_nips: tuple[int, ...] = ()
    limitation: Limitation = field(default_factory=Limitation)

    def supports(self, nip: int) -> bool:
        return nip in self.supported_nips


def _opt_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None


def parse_relay_info(data: object) -> RelayInfo:
    if not isinstance(data, dict):
        raise RelayInfoError("relay information must be a JSON object")
    nips_raw = data.get("supported_nips", [])
    nips = tuple(n for n in nips_raw if type(n) is int) if isinstance(nips_raw, list) else ()
    lim_raw = data.get("limitation", {})
    limits: dict[str, Any] = {}
    if isinstance(lim_raw, dict):
        for name in _INT_LIMITS:
            value = lim_raw.get(name)
            if type(value) is int and value >= 0:
                limits[name] = value
        for name in _BOOL_LIMITS:
            if isinstance(lim_raw.get(name), bool):
                limits[name] = lim_raw[name]
    return RelayInfo(
        name=_opt_str(data, "name"), description=_opt_str(data, "description"),
        pubkey=_opt_str(data, "pubkey"), software=_opt_str(data, "software"),
        version=_opt_str(data, "version"), supported_nips=nips, limitation=Limitation(**limits),
    )


def http_url(relay_url: str) -> str:
    """``wss://host/path`` → ``https://host/path`` (and ws → http)."""
    if relay_url.startswith("wss://"):
        return "https://" + relay_url[len("wss://"):]
    if relay_url.startswith("ws://"):
        return "http://" + relay_url[len("ws://"):]
    raise RelayInfoError(f"not a websocket URL: {relay_url!r}")


async def fetch_relay_info(client: httpx.AsyncClient, relay_url: str,
                           timeout_s: float = 10.0) -> RelayInfo:
    """GET the relay's NIP-11 document; any transport or format failure is a RelayInfoError."""
    try:
        resp = await client.get(http_url(relay_url), timeout=timeout_s,
                                headers={"Accept": "application/nostr+json"})
    except httpx.HTTPError as exc:
        raise RelayInfoError(f"NIP-11 request failed: {type(exc).__name__}") from exc
    if resp.status_code != 200:
        raise RelayInfoError(f"NIP-11 request answered HTTP {resp.status_code}")
    return parse_relay_document(resp.content)


def parse_relay_document(raw: bytes | str) -> RelayInfo:
    """A NIP-11 document as served (JSON text), or ``RelayInfoError``."""
    return parse_relay_info(load_json(raw, max_chars=MAX_DOCUMENT_BYTES, error=RelayInfoError,
                                      what="NIP-11 document"))
