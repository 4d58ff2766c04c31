"""Fixtures for the relay pool tests: the real durable store (storage.Intake on SQLite)."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.relays.backoff import BackoffPolicy
from storage import Database, Intake

FAST_BACKOFF = BackoffPolicy(base_s=0.2, factor=2.0, cap_s=1.0, jitter=0.5)


@pytest.fixture
async def intake_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(tmp_path / "intake.sqlite3")
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def intake(intake_db: Database) -> Intake:
    return Intake(intake_db)
