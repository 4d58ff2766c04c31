"""Fixtures of the ledger tests: a fresh database per test on each engine, a controllable clock.

Every test that takes ``db``, ``db_location`` or ``new_location`` runs twice: on a real SQLite file
(``[sqlite]``) and on the session's private PostgreSQL cluster
(``[postgresql]``: a fresh schema, see ``tests/fixtures/postgres.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from storage import Database, Ledger, Limits
from tests.storage.support import ManualClock

LIMITS = Limits(daily_free_msat=100_000, daily_free_jobs=5, pool_daily_cap_msat=None)
START = 1_767_225_600 - 3600  # 2025-12-31T23:00:00Z: one hour before a day boundary
ENGINES = ("sqlite", "postgresql")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_location(engine: str, tmp_path: Path,
                 request: pytest.FixtureRequest) -> Callable[[], str]:
    """Makes the location of a fresh, empty database on the test's engine."""
    if engine == "postgresql":
        new_schema: Callable[[], str] = request.getfixturevalue("postgres_cluster").new_schema
        return new_schema
    names = itertools.count(1)
    return lambda: str(tmp_path / f"ledger{next(names)}.sqlite3")


@pytest.fixture
def db_location(new_location: Callable[[], str]) -> str:
    return new_location()


@pytest.fixture
def empty_location(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database without even the schema (``db_location``'s may have it, without rows)."""
    if engine == "postgresql":
        return str(request.getfixturevalue("postgres_cluster").new_schema(empty=True))
    return str(tmp_path / "empty.sqlite3")


@pytest.fixture
async def db(db_location: str) -> AsyncIterator[Database]:
    database = await Database.open(db_location)
    yield database
    await database.close()


@pytest.fixture
def ledger(db: Database, clock: ManualClock) -> Ledger:
    return Ledger(db, LIMITS, clock=clock)
