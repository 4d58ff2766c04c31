"""The agent's background loops survive their own failures (``bot.agent.agent.restarting``)."""

from __future__ import annotations

import asyncio

import pytest

from bot.agent.agent import restarting
from storage import StorageFailure


async def test_a_failing_loop_runs_again_until_it_returns(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    async def loop() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise StorageFailure("database is locked")

    await asyncio.wait_for(restarting(loop, "outbox", first_delay_s=0.001), 10)
    assert runs == [0, 1, 2]
    failures = [r for r in caplog.records if "outbox loop failed" in r.getMessage()]
    assert len(failures) == 2


async def test_cancelling_stops_it_at_once() -> None:
    started = asyncio.Event()

    async def loop() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(restarting(loop, "settlements"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_loop_that_returns_is_not_run_again() -> None:
    runs: list[int] = []

    async def once() -> None:
        runs.append(1)

    await restarting(once, "profile")
    assert runs == [1]
