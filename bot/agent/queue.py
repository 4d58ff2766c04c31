"""A bounded work queue, fair across pubkeys.

``submit(owner, item)`` queues an item (an item already queued or running is not queued
again) and wakes one idle worker (not all of them); ``workers`` tasks take items round-robin
across owners, so one pubkey's burst waits behind its own earlier items while others are
served. ``close()`` stops taking new items;
``join(timeout)`` waits for the running ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from bot.relays.tasks import cancel_all

T = TypeVar("T")
log = logging.getLogger(__name__)


class FairQueue(Generic[T]):
    def __init__(self, handler: Callable[[T], Awaitable[None]], workers: int,
                 max_items: int = 100_000) -> None:
        self._handler = handler
        self._workers = workers
        self._max_items = max_items
        self._owners: OrderedDict[str, deque[T]] = OrderedDict()
        self._queued: set[T] = set()
        self._running: set[T] = set()
        self._ready = asyncio.Semaphore(0)  # one release per queued item: one worker wakes
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.failures = 0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"work queue {i}")
                       for i in range(self._workers)]

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def busy(self) -> int:
        return len(self._running)

    def submit(self, owner: str, item: T) -> bool:
        """Queue ``item`` for ``owner``; False if closed, full, or already queued/running."""
        if self._closed or item in self._queued or item in self._running:
            return False
        if len(self._queued) >= self._max_items:
            log.warning("work queue full: %s left for the sweep", item)
            return False
        self._owners.setdefault(owner, deque()).append(item)
        self._queued.add(item)
        self._ready.release()
        return True

    def _next(self) -> T | None:
        while self._owners:
            owner, items = next(iter(self._owners.items()))
            self._owners.move_to_end(owner)
            if items:
                item = items.popleft()
                if not items:
                    del self._owners[owner]
                return item
            del self._owners[owner]
        return None

    async def _work(self) -> None:
        while True:
            await self._ready.acquire()
            item = self._next()
            if item is None:
                if self._closed:
                    return
                continue
            self._queued.discard(item)
            self._running.add(item)
            try:
                await self._handler(item)
            except Exception:
                self.failures += 1
                log.exception("work item %s failed; the sweep will resume it", item)
            finally:
                self._running.discard(item)

    def close(self) -> None:
        """Take no new items; workers end once the queue is empty."""
        self._closed = True
        self._owners.clear()
        self._queued.clear()
        for _ in range(self._workers):  # each worker wakes, finds nothing, and ends
            self._ready.release()

    async def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for running items; then cancel what is left. True if all
        finished in time."""
        done = True
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await asyncio.gather(*self._tasks, return_exceptions=True)
            done = all(t.done() for t in self._tasks)
            await cancel_all(self._tasks)
        return done
