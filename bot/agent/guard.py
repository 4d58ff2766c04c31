"""Protection against floods: who gets served, decided before anything is written or sent.

``Guard.admit(pubkey, size)`` → :class:`Verdict`. Each pubkey has a token bucket
(``rate_per_minute``, ``burst``); all pubkeys together share a larger one, so many fresh keys
cannot flood either. A request beyond a bucket, or longer than ``max_request_bytes``, is dropped
without a reply and logged (SPEC §6: a reply would turn a flood into a flood of replies; an
oversized DM is treated as the malformed input it usually is) and counted by verdict in
``metrics.rejected``. Buckets of pubkeys idle long
enough to be full again are forgotten, so memory stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import Final

from bot.agent.metrics import Metrics
from bot.agent.settings import ServiceConfig

GLOBAL_FACTOR: Final = 50
"""The shared bucket holds this many pubkeys' worth of burst and rate."""
MAX_TRACKED: Final = 100_000


class Verdict(StrEnum):
    SERVE = "serve"
    RATE_LIMITED = "rate limited"
    FLOOD = "global flood"
    OVERSIZED = "oversized"


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class Guard:
    def __init__(self, config: ServiceConfig,
                 clock: Callable[[], float] = time.monotonic,
                 metrics: Metrics | None = None) -> None:
        self._config = config
        self._metrics = metrics or Metrics()
        self._clock = clock
        self._rate = config.rate_per_minute / 60.0
        self._burst = float(config.burst)
        self._buckets: dict[str, _Bucket] = {}
        self._global = _Bucket(self._burst * GLOBAL_FACTOR, clock())

    def _take(self, bucket: _Bucket, rate: float, burst: float, now: float) -> bool:
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def admit(self, pubkey: str, size_bytes: int) -> Verdict:
        verdict = self._verdict(pubkey, size_bytes)
        if verdict is not Verdict.SERVE:
            self._metrics.rejected.labels(verdict.value).inc()
        return verdict

    def _verdict(self, pubkey: str, size_bytes: int) -> Verdict:
        if size_bytes > self._config.max_request_bytes:
            return Verdict.OVERSIZED
        now = self._clock()
        bucket = self._buckets.get(pubkey)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._forget_full(now)
            bucket = self._buckets[pubkey] = _Bucket(self._burst, now)
        if not self._take(bucket, self._rate, self._burst, now):
            return Verdict.RATE_LIMITED
        if not self._take(self._global, self._rate * GLOBAL_FACTOR,
                          self._burst * GLOBAL_FACTOR, now):
            return Verdict.FLOOD
        return Verdict.SERVE

    def _forget_full(self, now: float) -> None:
        refill = self._burst / self._rate if self._rate else 0.0
        for key in [k for k, b in self._buckets.items() if now - b.stamp >= refill]:
            del self._buckets[key]
        if len(self._buckets) >= MAX_TRACKED:  # all active: forget the oldest half
            for key in sorted(self._buckets, key=lambda k: self._buckets[k].stamp)[
                    : MAX_TRACKED // 2]:
                del self._buckets[key]
