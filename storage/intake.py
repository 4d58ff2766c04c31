"""Exactly-once intake: processed event ids (and gift-wrap rumor ids), per-relay cursors, the
recorded requests (``storage.requests``) and the agent's small persistent state."""

from __future__ import annotations

from collections.abc import Sequence

from storage import completion, leases, requests
from storage.amounts import nonneg_msat, text_id
from storage.database import Database
from storage.errors import InvalidInput
from storage.leases import Replica
from storage.lifecycle import RequestOp
from storage.limits import Clock, system_clock
from storage.outcomes import Completion
from storage.prefetch import Prefetched, job_scope
from storage.requests import NewRequest, RequestRecord
from storage.sql import Connection, Cursor


class Intake:
    """``await intake.claim(event_id)`` is True only the first time ever (durably).

    ``replica``: this process among the agents sharing the database; a request it records is
    leased to it (``storage.leases``). A fresh id with the default lease length if not given."""

    def __init__(self, db: Database, clock: Clock = system_clock,
                 replica: Replica | None = None) -> None:
        self.db = db
        self.clock = clock
        self.replica = replica or Replica()

    async def claim(self, event_id: str) -> bool:
        text_id(event_id, "event_id", 128)
        now = self.clock()

        def run(conn: Connection) -> bool:
            cur = conn.execute(
                "INSERT INTO processed_events (event_id, claimed_at) VALUES (?, ?)"
                " ON CONFLICT DO NOTHING",
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

        def run(conn: Connection) -> int | None:
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

        def run(conn: Connection) -> None:
            conn.execute(
                "INSERT INTO relay_cursors (relay_url, since) VALUES (?, ?) ON CONFLICT (relay_url)"
                " DO UPDATE SET since = CASE WHEN excluded.since > relay_cursors.since"
                " THEN excluded.since ELSE relay_cursors.since END",
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
        now, me = self.clock(), self.replica
        return await self.db.write(
            lambda conn: requests.record(conn, request, ids, dropped, now, me))

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

    # ------------------------------------------------------------------ leases

    def holds(self, request: RequestRecord, margin_s: int = 0) -> bool:
        """Whether this replica holds ``request``'s lease for ``margin_s`` more seconds, as
        read (no I/O)."""
        return (request.lease_owner == self.replica.id
                and request.lease_until - self.clock() > margin_s)

    async def take_lease(self, request_id: str) -> bool:
        """Take or renew the lease of an unfinished request; False while another live replica
        holds it (or the request is finished)."""
        text_id(request_id, "request_id")
        now, me = self.clock(), self.replica
        return await self.db.write(lambda conn: leases.take_request(conn, request_id, me, now))

    async def renew_leases(self, request_ids: Sequence[str]) -> int:
        """Extend the leases this replica still holds among ``request_ids``; how many."""
        ids = [text_id(r, "request_id") for r in request_ids]
        if not ids:
            return 0
        now, me = self.clock(), self.replica
        return await self.db.write(lambda conn: leases.renew_requests(conn, ids, me, now))

    async def release_lease(self, request_id: str) -> None:
        """Give back this replica's lease of a request (another may take it at once)."""
        text_id(request_id, "request_id")
        me = self.replica
        await self.db.write(lambda conn: leases.release_request(conn, request_id, me))

    async def release_leases(self, owners: Sequence[str] = ()) -> int:
        """Free every lease of ``owners`` (default: this replica's own) on requests, outbox
        events and payouts; how many rows."""
        names = leases.check_owners(owners) if owners else [self.replica.id]
        engine = self.db.engine

        def run(conn: Connection) -> int:
            freed = sum(leases.release_all(conn, name) for name in names)
            if freed:
                leases.announce(conn, engine)
            return freed

        return await self.db.write(run)

    async def wait_for_work(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for another replica to give work back (True at once when
        one does, on PostgreSQL; SQLite only waits)."""
        return await self.db.wait_notice(leases.WORK_CHANNEL, timeout_s)

    async def lease_owners(self) -> list[str]:
        """Every replica holding a lease on an unfinished request, event or payout."""
        return await self.db.read(leases.owners)

    async def free_dead_leases(self) -> list[str]:
        """Free at once the leases of processes of this host that no longer run (an earlier
        run of this agent, killed: ``leases.dead_here``); the owners freed."""
        dead = [o for o in await self.lease_owners() if leases.dead_here(o, self.replica)]
        if dead:
            await self.release_leases(dead)
        return dead

    async def next_lease_expiry(self) -> int | None:
        """When the next lease another replica holds expires (``None``: none)."""
        now, me = self.clock(), self.replica
        return await self.db.read(lambda conn: leases.next_expiry(conn, me, now))

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

    async def settle_answer(self, request_id: str, answer: str, cost_msat: int) -> Completion:
        """Keep the work's answer and its actual cost on the request and settle the request's
        job (the job of the same id: ``Ledger.settle``) with that cost, in one transaction: a
        settled job always has its answer, so a restart sends it without running the work
        again. A repeat returns the first settlement."""
        text_id(request_id, "request_id")
        if not isinstance(answer, str) or len(answer) > requests.MAX_BODY_CHARS:
            raise InvalidInput("answer must be text")
        cost = nonneg_msat(cost_msat, "cost_msat")
        now = self.clock()

        def ask(conn: Connection) -> tuple[Cursor, completion.SettleReads]:
            return requests.ask_exists(conn, request_id), completion.ask_settle(conn, request_id)

        def run(conn: Connection,
                asked: tuple[Cursor, completion.SettleReads] | None) -> Completion:
            requests.save(conn, request_id, "answer", answer, cost, now,
                          None if asked is None else asked[0])
            return completion.settle(conn, request_id, cost, now,
                                     None if asked is None else asked[1])

        # the request's row is the job's (same id): one scope (``storage.prefetch``)
        return await self.db.write(Prefetched((job_scope(request_id),), ask, run))

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

        def run(conn: Connection) -> str | None:
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
