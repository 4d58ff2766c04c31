"""Deduplication: a bounded in-memory first layer plus a pluggable durable store.

The durable store is anything with the three methods of ``SeenStore`` — in production
``storage.Intake`` (SQLite: ``processed_events`` and ``relay_cursors``); ``MemoryStore`` keeps the
same contract for a process's lifetime only (local runs without a database, tools).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol


class SeenStore(Protocol):
    async def claim(self, event_id: str) -> bool:
        """True only the first time ``event_id`` is claimed."""
        ...

    async def cursor(self, relay_url: str) -> int | None:
        """The persisted ``since`` for a relay, or None."""
        ...

    async def set_cursor(self, relay_url: str, since: int) -> None:
        """Persist ``since`` for a relay (it never moves backwards)."""
        ...


class MemoryStore:
    """A ``SeenStore`` that forgets everything when the process ends."""

    def __init__(self) -> None:
        self._claimed: set[str] = set()
        self._cursors: dict[str, int] = {}

    async def claim(self, event_id: str) -> bool:
        if event_id in self._claimed:
            return False
        self._claimed.add(event_id)
        return True

    async def cursor(self, relay_url: str) -> int | None:
        return self._cursors.get(relay_url)

    async def set_cursor(self, relay_url: str, since: int) -> None:
        self._cursors[relay_url] = max(since, self._cursors.get(relay_url, since))


class RecentIds:
    """A bounded set of recently seen ids: ``add`` is True when the id is new."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> bool:
        if key in self._ids:
            self._ids.move_to_end(key)
            return False
        self._ids[key] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)
