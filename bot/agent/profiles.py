"""Profiles: the asker's lightning address (kind 0 ``lud16``, for refunds) and the agent's own
profile and relay lists (kind 0, 10002, 10050), published at every start so they stay current,
and its NIP-89 announcement as a kind-5050 job handler (``job_handler``)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final

from bot.agent.settings import ProfileConfig
from bot.nostr import nip65, nip89, nip90
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from bot.relays.config import RelayConfig
from bot.relays.pool import RelayPool
from bot.untrusted import load_json
from bot.work import Pricing
from storage import Limits

log = logging.getLogger(__name__)

KIND_METADATA: Final = 0
TTL_S: Final = 600.0
MAX_CACHED: Final = 50_000
MAX_PROFILE_CHARS: Final = 65_536
HANDLER_D: Final = "timmy-text-generation"
"""The d identifier of the agent's kind-31990 announcement: the same at every start, so each
announcement replaces the previous one."""
_ADDRESS = re.compile(r"^[a-z0-9._+-]{1,64}@[a-z0-9.-]{1,253}(:[0-9]{1,5})?$")


def parse_lud16(event: Event) -> str | None:
    """The lightning address of a kind-0 event, when it holds a well-formed one."""
    if event.kind != KIND_METADATA:
        return None
    try:
        data = load_json(event.content, max_chars=MAX_PROFILE_CHARS, error=ValueError,
                         what="profile")
    except ValueError:
        return None
    value = data.get("lud16") if isinstance(data, dict) else None
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    return value if _ADDRESS.match(value) else None


class Profiles:
    def __init__(self, pool: RelayPool, *, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    async def lud16(self, pubkey: str) -> str | None:
        """``pubkey``'s lightning address from its newest kind-0 profile (cached)."""
        hit = self._cache.get(pubkey)
        if hit is not None and self._clock() - hit[0] < TTL_S:
            return hit[1]
        address = None
        try:
            events = await self._pool.fetch(
                [{"kinds": [KIND_METADATA], "authors": [pubkey], "limit": 1}],
                timeout_s=self._timeout_s)
        except Exception:  # a relay problem: no address this time, try later
            log.warning("profile of %s: lookup failed", pubkey[:8])
            return None
        for event in events:
            if event.pubkey == pubkey:
                address = parse_lud16(event)
                break
        self._cache[pubkey] = (self._clock(), address)
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        return address


def own_profile(keys: Keys, profile: ProfileConfig, lud16: str | None,
                relays: Sequence[RelayConfig]) -> list[Event]:
    """The agent's kind 0 (name, about, picture, lud16), kind 10002 (its relays) and kind
    10050 (where to send it NIP-17 DMs: its read relays)."""
    meta: dict[str, str] = {"name": profile.name, "about": profile.about}
    if profile.picture:
        meta["picture"] = profile.picture
    if lud16:
        meta["lud16"] = lud16
    metadata = sign_event(keys, KIND_METADATA, json.dumps(meta, ensure_ascii=False), [])
    entries = [nip65.RelayListEntry(r.url, r.read, r.write) for r in relays]
    relay_list = nip65.relay_list_event(keys, entries)
    dm_relays = nip65.dm_relay_list_event(keys, [r.url for r in relays if r.read])
    return [metadata, relay_list, dm_relays]


def job_handler(keys: Keys, profile: ProfileConfig, pricing: Pricing, limits: Limits,
                max_tokens: int, models: Sequence[str], *, paused: bool = False,
                created_at: int | None = None) -> Event:
    """The NIP-89 announcement (kind 31990) of the agent as a kind-5050 handler: name, about
    and picture, what it charges and what it gives free each day (``limits``, the operator's
    overrides included; nothing while ``paused``)."""
    meta: dict[str, object] = {"name": profile.name, "about": profile.about}
    if profile.picture:
        meta["picture"] = profile.picture
    meta["pricing"] = {"unit": "msat", "input_per_tokens": pricing.input_msat,
                       "output_per_tokens": pricing.output_msat,
                       "per_tokens": pricing.per_tokens, "fixed_fee": pricing.fixed_fee_msat}
    meta["free_allowance"] = ({"daily_msat": 0, "daily_jobs": 0, "paused": True} if paused
                              else {"daily_msat": limits.daily_free_msat,
                                    "daily_jobs": limits.daily_free_jobs,
                                    "while": "the zap-funded pool lasts"})
    meta["nip90Params"] = {"max_tokens": {"required": False, "values": [str(max_tokens)]},
                           "temperature": {"required": False, "values": ["0", "2"]},
                           "model": {"required": False, "values": list(models)}}
    meta["encryption"] = ["nip04", "nip44"]
    return nip89.handler_info(keys, HANDLER_D, [nip90.KIND_TEXT_JOB], meta, created_at)
