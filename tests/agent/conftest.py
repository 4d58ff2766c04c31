"""Fixtures of the agent tests: a real SQLite ledger file per test."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import Database, Intake


@pytest.fixture
async def agent_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(tmp_path / "agent.sqlite3")
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def intake(agent_db: Database) -> Intake:
    return Intake(agent_db)
