"""Exactly-once intake: processed event ids (and gift-wrap rumor ids) and per-relay cursors."""

from __future__ import annotations

import sqlite3

from storage.amounts import text_id
from storage.database import Database
from storage.errors import InvalidInput
from storage.limits import Clock, system_clock


class Intake:
    """``await intake.claim(event_id)`` is True only the first time ever (durably)."""

    def __init__(self, db: Database, clock: Clock = system_clock) -> None:
        self.db = db
        self.clock = clock

    async def claim(self, event_id: str) -> bool:
        text_id(event_id, "event_id", 128)
        now = self.clock()

        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO processed_events (event_id, claimed_at) VALUES (?, ?)",
                (event_id, now),
            )
            return cur.rowcount == 1

        return await self.db.write(run)

    async def seen(self, event_id: str) -> bool:
        """Whether ``event_id`` was claimed already (reads only)."""
        text_id(event_id, "event_id", 128)
        return await self.db.read(
            lambda conn: (
                conn.execute(
                    "SELECT 1 FROM processed_events WHERE event_id = ?", (event_id,)
                ).fetchone()
                is not None
            )
        )

    async def cursor(self, relay_url: str) -> int | None:
        text_id(relay_url, "relay_url", 2048)

        def run(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT since FROM relay_cursors WHERE relay_url = ?", (relay_url,)
            ).fetchone()
            return None if row is None else int(row[0])

        return await self.db.read(run)

    async def set_cursor(self, relay_url: str, since: int) -> None:
        """Store the relay's ``since``; it never moves backwards."""
        text_id(relay_url, "relay_url", 2048)
        if type(since) is not int or since < 0:
            raise InvalidInput("since must be a non-negative int of epoch seconds")

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO relay_cursors (relay_url, since) VALUES (?, ?) ON CONFLICT (relay_url)"
                " DO UPDATE SET since = MAX(since, excluded.since)",
                (relay_url, since),
            )

        await self.db.write(run)
