"""Relay lists: NIP-65 (kind 10002, ``r`` tags with read/write markers) and NIP-17's DM relay
list (kind 10050, ``relay`` tags)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from bot.nostr.errors import RelayListError
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys

KIND_RELAY_LIST: Final = 10002
KIND_DM_RELAY_LIST: Final = 10050
MAX_URL_CHARS: Final = 512


@dataclass(frozen=True, slots=True)
class RelayListEntry:
    url: str
    read: bool = True
    write: bool = True


def is_relay_url(url: object) -> bool:
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
        return False
    try:
        url.encode("utf-8")  # a lone surrogate (from an environment variable) is no URL
        parts = urlsplit(url)
    except ValueError:  # UnicodeEncodeError included
        return False
    return parts.scheme in ("ws", "wss") and bool(parts.hostname)


def relay_key(url: str) -> str:
    """``url`` in one form per relay, to compare relay URLs written differently (the scheme
    and host in lower case, no trailing slash): ``wss://Relay.example/`` is
    ``wss://relay.example``. Text that is no URL is returned as it is."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "ws://[" (a NIP-90 request's relays are checked for their prefix only)
        return url
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"),
                       parts.query, ""))


def parse_relay_list(event: Event) -> list[RelayListEntry]:
    """Entries of a kind-10002 event; bad URLs and unknown markers are skipped."""
    if event.kind != KIND_RELAY_LIST:
        raise RelayListError(f"expected kind {KIND_RELAY_LIST}, got {event.kind}")
    entries: dict[str, RelayListEntry] = {}
    for tag in event.tags:
        if len(tag) < 2 or tag[0] != "r" or not is_relay_url(tag[1]):
            continue
        marker = tag[2] if len(tag) > 2 else ""
        if marker not in ("", "read", "write"):
            continue
        entries[tag[1]] = RelayListEntry(tag[1], read=marker != "write", write=marker != "read")
    return list(entries.values())


def relay_list_event(keys: Keys, entries: Iterable[RelayListEntry],
                     created_at: int | None = None) -> Event:
    tags: list[list[str]] = []
    for entry in entries:
        if not is_relay_url(entry.url):
            raise RelayListError(f"not a relay URL: {entry.url!r}")
        if entry.read and entry.write:
            tags.append(["r", entry.url])
        elif entry.read:
            tags.append(["r", entry.url, "read"])
        elif entry.write:
            tags.append(["r", entry.url, "write"])
    return sign_event(keys, KIND_RELAY_LIST, "", tags, created_at)


def parse_dm_relays(event: Event) -> list[str]:
    """Relay URLs of a kind-10050 event, in order, without duplicates or bad URLs."""
    if event.kind != KIND_DM_RELAY_LIST:
        raise RelayListError(f"expected kind {KIND_DM_RELAY_LIST}, got {event.kind}")
    seen: list[str] = []
    for tag in event.tags:
        if len(tag) >= 2 and tag[0] == "relay" and is_relay_url(tag[1]) and tag[1] not in seen:
            seen.append(tag[1])
    return seen


def dm_relay_list_event(keys: Keys, urls: Iterable[str], created_at: int | None = None) -> Event:
    tags: list[list[str]] = []
    for url in urls:
        if not is_relay_url(url):
            raise RelayListError(f"not a relay URL: {url!r}")
        tags.append(["relay", url])
    return sign_event(keys, KIND_DM_RELAY_LIST, "", tags, created_at)
