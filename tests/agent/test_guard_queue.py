"""Flood protection (token buckets) and the fair work queue."""

import asyncio

from bot.agent.guard import GLOBAL_FACTOR, Guard, Verdict
from bot.agent.metrics import Metrics
from bot.agent.queue import FairQueue
from bot.agent.settings import ServiceConfig


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rejected(metrics: Metrics, reason: str) -> float | None:
    return metrics.registry.get_sample_value("timmy_rejected_events_total", {"reason": reason})


def test_one_pubkey_gets_its_burst_then_its_rate() -> None:
    clock = Clock()
    metrics = Metrics()
    guard = Guard(ServiceConfig(rate_per_minute=60, burst=3), clock, metrics)
    assert [guard.admit("a", 10) for _ in range(4)] == [Verdict.SERVE] * 3 + [
        Verdict.RATE_LIMITED]
    assert guard.admit("b", 10) is Verdict.SERVE  # others are not affected
    clock.now += 1.0
    assert guard.admit("a", 10) is Verdict.SERVE
    assert guard.admit("a", 10) is Verdict.RATE_LIMITED
    assert rejected(metrics, "rate limited") == 2
    assert rejected(metrics, "global flood") == 0


def test_many_fresh_keys_hit_the_global_bucket() -> None:
    clock = Clock()
    metrics = Metrics()
    guard = Guard(ServiceConfig(rate_per_minute=60, burst=2), clock, metrics)
    verdicts = [guard.admit(f"k{i}", 10) for i in range(2 * GLOBAL_FACTOR + 10)]
    assert verdicts.count(Verdict.SERVE) == 2 * GLOBAL_FACTOR
    assert verdicts.count(Verdict.FLOOD) == 10
    assert rejected(metrics, "global flood") == 10


def test_sizes() -> None:
    metrics = Metrics()
    guard = Guard(ServiceConfig(max_request_bytes=100), Clock(), metrics)
    assert guard.admit("a", 100) is Verdict.SERVE
    assert guard.admit("a", 101) is Verdict.OVERSIZED
    assert rejected(metrics, "oversized") == 1


async def test_fair_queue_serves_owners_round_robin() -> None:
    order: list[str] = []
    gate = asyncio.Event()

    async def handle(item: str) -> None:
        await gate.wait()
        order.append(item)

    queue: FairQueue[str] = FairQueue(handle, workers=1)
    for i in range(5):
        assert queue.submit("flooder", f"f{i}")
    assert queue.submit("other", "o0")
    assert not queue.submit("other", "o0")  # already queued
    queue.start()
    gate.set()
    for _ in range(200):
        if len(order) == 6:
            break
        await asyncio.sleep(0.01)
    assert order.index("o0") <= 1  # not behind the flooder's burst
    queue.close()
    assert await queue.join(1.0)
    assert not queue.submit("other", "late")


async def test_a_failing_item_does_not_stop_the_queue() -> None:
    done: list[str] = []

    async def handle(item: str) -> None:
        if item == "bad":
            raise RuntimeError("boom")
        done.append(item)

    queue: FairQueue[str] = FairQueue(handle, workers=2)
    queue.start()
    queue.submit("a", "bad")
    queue.submit("b", "good")
    for _ in range(100):
        if done:
            break
        await asyncio.sleep(0.01)
    assert done == ["good"] and queue.failures == 1
    queue.close()
    assert await queue.join(1.0)
