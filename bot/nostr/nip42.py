"""NIP-42 client authentication: the kind-22242 event answering a relay's challenge."""

from __future__ import annotations

import time
from typing import Final, TypeGuard

from bot.nostr.errors import MalformedEvent
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys

KIND_AUTH: Final = 22242
MAX_CHALLENGE_CHARS: Final = 512
MAX_CLOCK_SKEW_S: Final = 600


def is_valid_challenge(challenge: object) -> TypeGuard[str]:
    """A challenge we can answer: a non-empty string of at most 512 characters, valid Unicode
    (a lone surrogate cannot be serialized, so no event can sign it)."""
    if not isinstance(challenge, str) or not challenge or len(challenge) > MAX_CHALLENGE_CHARS:
        return False
    try:
        challenge.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def auth_event(keys: Keys, relay_url: str, challenge: str, created_at: int | None = None) -> Event:
    """Sign the AUTH event for ``challenge`` from the relay at ``relay_url``."""
    if not is_valid_challenge(challenge):
        raise MalformedEvent("AUTH challenge must be a non-empty string of sane length")
    if not isinstance(relay_url, str) or not relay_url:
        raise MalformedEvent("relay URL must be a non-empty string")
    tags = [["relay", relay_url], ["challenge", challenge]]
    return sign_event(keys, KIND_AUTH, "", tags, created_at)


def check_auth_event(event: Event, relay_url: str, challenge: str,
                     now: int | None = None) -> bool:
    """What a relay checks: kind, challenge, relay URL, time within ten minutes."""
    current = int(time.time()) if now is None else now
    return (event.kind == KIND_AUTH
            and event.first_tag("challenge") == challenge
            and normalize_url(event.first_tag("relay") or "") == normalize_url(relay_url)
            and abs(current - event.created_at) < MAX_CLOCK_SKEW_S)


def normalize_url(url: str) -> str:
    """Lowercase scheme and host, no trailing slash: enough to compare relay URLs."""
    url = url.strip()
    if "://" in url:
        scheme, rest = url.split("://", 1)
        host, sep, path = rest.partition("/")
        url = f"{scheme.lower()}://{host.lower()}{sep}{path}"
    return url.rstrip("/")
