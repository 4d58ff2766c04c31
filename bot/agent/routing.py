"""Where an asker reads: their kind-10050 DM relays (NIP-17) and kind-10002 read relays
(NIP-04), looked up in the background and cached.

``RelayLists.known(pubkey, protocol)`` answers at once from the cache (``None`` when not known
yet); ``lookup(pubkey)`` fetches both lists from the agent's read relays once per pubkey and
TTL, however many callers ask meanwhile. Look-ups asked within ``BATCH_WINDOW_S`` of each other
share one query (up to ``MAX_BATCH`` authors): 100 fresh askers cost the relays a few REQs,
not 100. A query no read relay answered (none connected, or none sent EOSE in time) leaves
the lists unknown, to be asked again, rather than cached as empty. The first reply never
waits for a look-up: it goes to the relays the request arrived on, and to the asker's lists
once they are known.
"""

from __future__ import annotations

import asyncio
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


BATCH_WINDOW_S: Final = 0.05
MAX_BATCH: Final = 50


class RelayLists:
    def __init__(self, pool: RelayPool, *, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, tuple[str, ...], tuple[str, ...]]] = (
            OrderedDict())
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._waiting: list[str] = []  # asked, not yet in a query
        self._batcher: asyncio.Task[None] | None = None
        self.queries = 0

    def known(self, pubkey: str, protocol: str) -> tuple[str, ...] | None:
        entry = self._cache.get(pubkey)
        if entry is None or self._clock() - entry[0] > TTL_S:
            return None
        return entry[1] if protocol == "nip17" else entry[2]

    async def lookup(self, pubkey: str) -> None:
        """Fetch ``pubkey``'s lists (once at a time per pubkey, in a batch with the others
        asked meanwhile); errors leave the cache empty."""
        running = self._inflight.get(pubkey)
        if running is None:
            running = asyncio.get_running_loop().create_future()
            self._inflight[pubkey] = running
            self._waiting.append(pubkey)
            if self._batcher is None or self._batcher.done():
                self._batcher = asyncio.create_task(self._batches(), name="relay lists")
        await asyncio.shield(running)

    async def _batches(self) -> None:
        """Query the waiting pubkeys, ``MAX_BATCH`` at a time, until none is left. Whatever
        ends it (a cancellation at stop), no caller is left waiting."""
        try:
            await asyncio.sleep(BATCH_WINDOW_S)
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                await self._fetch(batch)
                self._release(batch)
        finally:
            self._waiting = []
            self._release(list(self._inflight))

    def _release(self, pubkeys: list[str]) -> None:
        for pubkey in pubkeys:
            future = self._inflight.pop(pubkey, None)
            if future is not None and not future.done():
                future.set_result(None)

    async def _fetch(self, pubkeys: list[str]) -> None:
        found: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
            pubkey: ((), ()) for pubkey in pubkeys}
        self.queries += 1
        try:
            result = await self._pool.query(
                [{"kinds": [nip65.KIND_DM_RELAY_LIST, nip65.KIND_RELAY_LIST],
                  "authors": pubkeys}], timeout_s=self._timeout_s)
        except Exception as exc:  # a relay problem: not known, asked again later
            log.warning("relay lists of %d askers not looked up: %s", len(pubkeys), exc)
            return
        if not result.answered:
            log.warning("relay lists of %d askers not looked up: no read relay answered",
                        len(pubkeys))
            return
        for event in result.events:  # newest first
            if event.pubkey not in found:
                continue
            dm, read = found[event.pubkey]
            try:
                if event.kind == nip65.KIND_DM_RELAY_LIST and not dm:
                    dm = tuple(nip65.parse_dm_relays(event)[:MAX_RELAYS])
                elif event.kind == nip65.KIND_RELAY_LIST and not read:
                    read = tuple(e.url for e in nip65.parse_relay_list(event)
                                 if e.read)[:MAX_RELAYS]
            except NostrError:
                continue
            found[event.pubkey] = (dm, read)
        now = self._clock()
        for pubkey, (dm, read) in found.items():
            self._cache[pubkey] = (now, dm, read)
            self._cache.move_to_end(pubkey)
            log.debug("relay lists of %s: %d DM relays, %d read relays", pubkey[:8], len(dm),
                      len(read))
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
