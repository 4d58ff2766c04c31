"""NIP-89 handler information (kind 31990): how clients find a service provider for a kind.

``handler_info(keys, d, kinds, metadata)`` builds the parameterized-replaceable announcement: a
``d`` identifier (the same one every time, so a new announcement replaces the old), one ``k``
tag per supported kind, and kind-0 style metadata as JSON in ``content`` (name, about, picture,
and whatever else the provider says about itself, e.g. its pricing). Pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Final

from bot.nostr.errors import MalformedEvent
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys

KIND_HANDLER_INFO: Final = 31990


def handler_info(keys: Keys, d: str, kinds: Sequence[int], metadata: Mapping[str, object],
                 created_at: int | None = None) -> Event:
    if not d or not kinds:
        raise MalformedEvent("a handler announcement needs a d identifier and a kind")
    tags = [["d", d]] + [["k", str(k)] for k in kinds]
    content = json.dumps(dict(metadata), separators=(",", ":"), ensure_ascii=False)
    return sign_event(keys, KIND_HANDLER_INFO, content, tags, created_at)
