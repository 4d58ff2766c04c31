"""Stopping background tasks for good, in bounded time.

A single ``task.cancel()`` followed by ``await task`` can wait forever: on Python 3.11,
``asyncio.wait_for`` returns the inner result instead of raising ``CancelledError`` when the inner
future finishes in the same loop iteration as the cancellation, so a ``while True`` loop around it
carries on as if nothing happened. Long-lived loops here therefore use ``asyncio.timeout`` (which
never swallows an outside cancellation) instead of ``wait_for``, and every close path stops its
tasks with :func:`cancel_and_wait`, which cancels again until the task really ends and gives up
after a bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, Final

log = logging.getLogger("bot.relays")

STOP_TIMEOUT_S: Final = 5.0
_RECANCEL_EVERY_S: Final = 0.2


async def cancel_and_wait(task: asyncio.Task[Any] | None, *,
                          timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Cancel ``task`` and wait until it is done, cancelling again if a cancellation was lost.

    Returns True once the task is done, False if it was still running after ``timeout_s`` (it is
    then left cancelled-requested and logged). Never raises the task's own exception; a
    cancellation of the caller propagates as usual.
    """
    if task is None:
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(timeout_s, 0.0)
    while not task.done():
        task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("task %s did not stop within %.1fs", task.get_name(), timeout_s)
            return False
        await asyncio.wait({task}, timeout=min(_RECANCEL_EVERY_S, remaining))
    if not task.cancelled() and task.exception() is not None:
        log.debug("task %s ended with %r", task.get_name(), task.exception())
    return True


async def cancel_all(tasks: Iterable[asyncio.Task[Any]], *,
                     timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """:func:`cancel_and_wait` for several tasks at once, within one shared bound."""
    results = await asyncio.gather(*(cancel_and_wait(t, timeout_s=timeout_s) for t in tasks))
    return all(results)
