"""NIP-01 filter matching, so an event a relay sends for a subscription is checked against
what that subscription asked for (a relay must not be able to slip unrelated events in)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bot.nostr.event import Event


def matches(flt: Mapping[str, Any], event: Event) -> bool:
    """True when ``event`` satisfies every condition of ``flt`` (unknown keys are ignored)."""
    ids = flt.get("ids")
    if isinstance(ids, list) and event.id not in ids:
        return False
    authors = flt.get("authors")
    if isinstance(authors, list) and event.pubkey not in authors:
        return False
    kinds = flt.get("kinds")
    if isinstance(kinds, list) and event.kind not in kinds:
        return False
    since = flt.get("since")
    if isinstance(since, int) and event.created_at < since:
        return False
    until = flt.get("until")
    if isinstance(until, int) and event.created_at > until:
        return False
    for key, wanted in flt.items():
        if len(key) == 2 and key[0] == "#" and isinstance(wanted, list):
            values = {t[1] for t in event.tags if len(t) >= 2 and t[0] == key[1]}
            if not values.intersection(wanted):
                return False
    return True


def matches_any(filters: Iterable[Mapping[str, Any]], event: Event) -> bool:
    return any(matches(f, event) for f in filters)
