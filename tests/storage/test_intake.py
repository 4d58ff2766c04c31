"""Exactly-once intake and relay cursors."""

from __future__ import annotations

import asyncio

import pytest

from storage import Database, Intake, InvalidInput


async def test_claim_is_true_once_ever(db_location: str) -> None:
    db = await Database.open(db_location)
    intake = Intake(db)
    results = await asyncio.gather(*(intake.claim("ev1") for _ in range(20)))
    assert sorted(results) == [False] * 19 + [True]
    assert await intake.seen("ev1")
    assert not await intake.seen("ev2")
    await db.close()
    db = await Database.open(db_location)  # durable across restarts
    intake = Intake(db)
    assert not await intake.claim("ev1")
    assert await intake.claim("ev2")
    await db.close()


async def test_cursors(db: Database) -> None:
    intake = Intake(db)
    assert await intake.cursor("wss://a") is None
    await intake.set_cursor("wss://a", 100)
    await intake.set_cursor("wss://a", 50)  # never backwards
    await intake.set_cursor("wss://b", 7)
    assert (await intake.cursor("wss://a"), await intake.cursor("wss://b")) == (100, 7)
    await intake.set_cursor("wss://a", 200)
    assert await intake.cursor("wss://a") == 200


async def test_bad_intake_input(db: Database) -> None:
    intake = Intake(db)
    with pytest.raises(InvalidInput):
        await intake.claim("")
    with pytest.raises(InvalidInput):
        await intake.set_cursor("wss://a", -1)
    with pytest.raises(InvalidInput):
        await intake.set_cursor("wss://a", 1.5)  # type: ignore[arg-type]
