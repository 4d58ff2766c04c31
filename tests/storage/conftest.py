"""Fixtures of the ledger tests: a real SQLite file per test, a controllable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import Database, Ledger, Limits
from tests.storage.support import ManualClock

LIMITS = Limits(daily_free_msat=100_000, daily_free_jobs=5, pool_daily_cap_msat=None)
START = 1_767_225_600 - 3600  # 2025-12-31T23:00:00Z: one hour before a day boundary


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(db_path)
    yield database
    await database.close()


@pytest.fixture
def ledger(db: Database, clock: ManualClock) -> Ledger:
    return Ledger(db, LIMITS, clock=clock)
