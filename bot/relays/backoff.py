"""Reconnect delays: exponential growth, a cap, and jitter from an injectable random source.

``backoff_delays`` is a pure generator: given the same ``rand`` it yields the same delays, so
tests check the schedule without sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

Rand = Callable[[], float]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Delay n (from 0) is ``min(cap_s, base_s * factor**n)``, scaled by a jitter in
    ``[1 - jitter, 1]`` (``jitter=0.5`` is "equal jitter")."""

    base_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 60.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.factor < 1 or self.cap_s < self.base_s:
            raise ValueError("backoff needs base_s > 0, factor >= 1, cap_s >= base_s")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")


DEFAULT_BACKOFF = BackoffPolicy()


def backoff_delays(policy: BackoffPolicy = DEFAULT_BACKOFF,
                   rand: Rand = random.random) -> Iterator[float]:
    """An endless sequence of delays in seconds."""
    ceiling = policy.base_s
    while True:
        yield ceiling * (1.0 - policy.jitter * rand())
        ceiling = min(policy.cap_s, ceiling * policy.factor)
