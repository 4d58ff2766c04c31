"""Where an asker reads: their kind-10050 DM relays (NIP-17) and kind-10002 read relays
(NIP-04), looked up in the background and cached.

``RelayLists.known(pubkey, protocol)`` answers at once from the cache (``None`` when not known
yet); ``lookup(pubkey)`` fetches both lists from the agent's read relays once per pubkey and
TTL, however many callers ask meanwhile. The first reply never waits for a look-up: it goes to
the relays the request arrived on, and to the asker's lists once they are known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from bot.nostr import nip65
from bot.nostr.errors import NostrError
from bot.relays.pool import RelayPool

log = logging.getLogger(__name__)

TTL_S: Final = 3600.0
MAX_CACHED: Final = 50_000
MAX_RELAYS: Final = 8


class RelayLists:
    def __init__(self, pool: RelayPool, *, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, tuple[str, ...], tuple[str, ...]]] = (
            OrderedDict())
        self._inflight: dict[str, asyncio.Future[None]] = {}

    def known(self, pubkey: str, protocol: str) -> tuple[str, ...] | None:
        entry = self._cache.get(pubkey)
        if entry is None or self._clock() - entry[0] > TTL_S:
            return None
        return entry[1] if protocol == "nip17" else entry[2]

    async def lookup(self, pubkey: str) -> None:
        """Fetch ``pubkey``'s lists (once at a time per pubkey); errors leave the cache empty."""
        running = self._inflight.get(pubkey)
        if running is not None:
            await asyncio.shield(running)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[pubkey] = future
        try:
            await self._fetch(pubkey)
        finally:
            del self._inflight[pubkey]
            future.set_result(None)

    async def _fetch(self, pubkey: str) -> None:
        dm: tuple[str, ...] = ()
        read: tuple[str, ...] = ()
        with contextlib.suppress(Exception):
            events = await self._pool.fetch(
                [{"kinds": [nip65.KIND_DM_RELAY_LIST, nip65.KIND_RELAY_LIST],
                  "authors": [pubkey], "limit": 4}], timeout_s=self._timeout_s)
            for event in events:  # newest first
                try:
                    if event.kind == nip65.KIND_DM_RELAY_LIST and not dm:
                        dm = tuple(nip65.parse_dm_relays(event)[:MAX_RELAYS])
                    elif event.kind == nip65.KIND_RELAY_LIST and not read:
                        read = tuple(e.url for e in nip65.parse_relay_list(event)
                                     if e.read)[:MAX_RELAYS]
                except NostrError:
                    continue
        self._cache[pubkey] = (self._clock(), dm, read)
        self._cache.move_to_end(pubkey)
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        log.debug("relay lists of %s: %d DM relays, %d read relays", pubkey[:8], len(dm),
                  len(read))
