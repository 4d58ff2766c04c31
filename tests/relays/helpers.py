"""Small helpers for relay tests: an event collector and a bounded wait."""

import asyncio
from collections.abc import Callable

from bot.nostr.event import Event
from bot.relays.config import RelayConfig


class Collector:
    """A subscription handler that records what it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.relays: list[str] = []

    async def __call__(self, event: Event, relay_url: str) -> None:
        self.events.append(event)
        self.relays.append(relay_url)

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.events]


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Poll ``predicate`` until it holds or the timeout passes; returns its last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def configs(*urls: str, read: bool = True, write: bool = True) -> list[RelayConfig]:
    return [RelayConfig(url, read=read, write=write) for url in urls]
