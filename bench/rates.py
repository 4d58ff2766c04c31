"""Rate measurement shared by the benchmarks: calls per second of a step, for a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def rate(seconds: float, step: Callable[[int], object]) -> float:
    """Calls per second of ``step(i)`` (i = 0, 1, ...) over about ``seconds``."""
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        step(count)
        count += 1
    return count / (time.perf_counter() - start)


async def async_rate(
    seconds: float, concurrency: int, limit: int, make: Callable[[int], Awaitable[None]]
) -> float:
    """Calls per second of ``make(i)`` for distinct i < limit, run by ``concurrency`` workers,
    until time or inputs run out."""
    counter = iter(range(limit))
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        for i in counter:
            if time.perf_counter() >= deadline:
                return
            await make(i)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)
