"""Exactly-once intake: processed event ids (and gift-wrap rumor ids), per-relay cursors, the
recorded requests (``storage.requests``) and the agent's small persistent state."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from storage import requests
from storage.amounts import text_id
from storage.database import Database
from storage.errors import InvalidInput
from storage.lifecycle import RequestOp
from storage.limits import Clock, system_clock
from storage.requests import NewRequest, RequestRecord


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

    # ------------------------------------------------------------------ requests

    async def record(
        self, request: NewRequest, claims: Sequence[str] = (), *, dropped: bool = False
    ) -> RequestRecord | None:
        """Claim ``claims`` and record ``request`` in one transaction; ``None`` when it was
        recorded before. ``dropped``: recorded so it is never handled again, and never answered."""
        requests.check_new_request(request)
        ids = [text_id(c, "claim", 128) for c in claims]
        now = self.clock()
        return await self.db.write(lambda conn: requests.record(conn, request, ids, dropped, now))

    async def request(self, request_id: str) -> RequestRecord:
        text_id(request_id, "request_id")
        return await self.db.read(lambda conn: requests.get(conn, request_id))

    async def latest_request(self, sender: str) -> RequestRecord | None:
        """``sender``'s newest request (how to reach them: protocol and relays)."""
        text_id(sender, "sender")
        return await self.db.read(lambda conn: requests.latest(conn, sender))

    async def unfinished_requests(self) -> list[RequestRecord]:
        """Requests ``new`` or ``open``, oldest first (the start-up sweep resumes each)."""
        return await self.db.read(requests.unfinished)

    async def move_request(self, request_id: str, op: RequestOp) -> None:
        """``op`` on the request (``storage.lifecycle.REQUEST_LIFECYCLE``)."""
        text_id(request_id, "request_id")
        now = self.clock()
        await self.db.write(lambda conn: requests.move(conn, request_id, op, now))

    async def save_invoice(self, request_id: str, bolt11: str) -> None:
        """Keep the invoice quoted for a request (so a restart re-sends the same one)."""
        text_id(request_id, "request_id")
        text_id(bolt11, "bolt11", 8192)
        now = self.clock()
        await self.db.write(
            lambda conn: requests.save(conn, request_id, "invoice", bolt11, None, now))

    async def save_answer(self, request_id: str, answer: str, cost_msat: int) -> None:
        """Keep the work's answer and its actual cost before settling (a restart settles it
        and sends it without running the work again)."""
        text_id(request_id, "request_id")
        if not isinstance(answer, str) or len(answer) > requests.MAX_BODY_CHARS:
            raise InvalidInput("answer must be text")
        if type(cost_msat) is not int or cost_msat < 0:
            raise InvalidInput("cost_msat must be a non-negative int")
        now = self.clock()
        await self.db.write(
            lambda conn: requests.save(conn, request_id, "answer", answer, cost_msat, now))

    async def history(self, sender: str, before: str, limit: int,
                      protocols: Sequence[str]) -> list[tuple[str, str]]:
        """``sender``'s last ``limit`` (question, answer) pairs in ``protocols``, oldest
        first."""
        text_id(sender, "sender")
        if type(limit) is not int or not 0 <= limit <= 100:
            raise InvalidInput("limit must be an int in 0..100")
        names = [text_id(p, "protocol", 32) for p in protocols]
        if limit == 0 or not names:
            return []
        return await self.db.read(
            lambda conn: requests.history(conn, sender, before, limit, names))

    async def erase_before(self, cutoff: int) -> int:
        """Erase questions and answers of finished requests older than ``cutoff``."""
        if type(cutoff) is not int:
            raise InvalidInput("cutoff must be an int of epoch seconds")
        return await self.db.write(lambda conn: requests.erase_before(conn, cutoff))

    # ------------------------------------------------------------------ agent state

    async def state(self, key: str) -> str | None:
        text_id(key, "key", 128)

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT value FROM agent_state WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self.db.read(run)

    async def set_state(self, key: str, value: str) -> None:
        text_id(key, "key", 128)
        if not isinstance(value, str) or len(value) > 4096:
            raise InvalidInput("value must be text of at most 4096 characters")
        await self.db.write(lambda conn: conn.execute(
            "INSERT INTO agent_state (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value)) and None)
