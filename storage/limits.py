"""Daily limits (from configuration) and the UTC clock they are counted against."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from storage.amounts import MAX_MSAT
from storage.errors import InvalidInput

Clock = Callable[[], int]
"""Returns the current time as integer seconds since the Unix epoch (UTC)."""


def system_clock() -> int:
    return int(time.time())


def utc_day(epoch_s: int) -> str:
    """The UTC calendar day of a timestamp, ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.gmtime(epoch_s))


@dataclass(frozen=True, slots=True)
class Limits:
    """Subsidy limits per pubkey per UTC day, and an optional global daily cap on pool spending."""

    daily_free_msat: int
    daily_free_jobs: int
    pool_daily_cap_msat: int | None = None

    def __post_init__(self) -> None:
        for name in ("daily_free_msat", "daily_free_jobs"):
            value = getattr(self, name)
            if type(value) is not int or value < 0 or value > MAX_MSAT:
                raise InvalidInput(f"Limits.{name} must be a non-negative int, got {value!r}")
        cap = self.pool_daily_cap_msat
        if cap is not None and (type(cap) is not int or cap < 0 or cap > MAX_MSAT):
            raise InvalidInput(
                f"Limits.pool_daily_cap_msat must be None or a non-negative int, got {cap!r}"
            )
