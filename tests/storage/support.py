"""Helpers shared by the ledger tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

from storage import Database, Limits, check


class ManualClock:
    """An injectable clock the test moves by hand."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


async def assert_invariants(db: Database, limits: Limits | None = None) -> dict[str, int]:
    """SPEC §1 invariants: nothing below zero, balances = journal, journal sums to zero, limits."""
    report = await check(db, limits)
    assert report.violations == []
    assert sum(report.balances.values()) == 0
    for account, balance in report.balances.items():
        if account not in ("zaps_in", "operator", "lightning_in"):
            assert balance - report.pending[account] >= 0, account
    return report.balances


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
