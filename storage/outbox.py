"""The outbox: messages stored (signed, as opaque text) before they are published.

A message is one or more events under one ``key`` (e.g. a NIP-17 wrap and its self copy under
``reply:<request id>``); ``add`` stores a key once, so a message built twice (a restart, a retry)
is stored once and the second copy is never published. Each event stays ``pending`` until a
relay accepts it — one of its ``deliver_to`` relays when it names some (the asker's own relays:
a reply counts as sent when it reached where the asker reads), else any — and is republished as
the very same event after a restart. ``route`` records where an asker reads once that is learnt
after the event was stored. ``add`` can move a request's state in the same transaction, so
"answered" and "answer stored" never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from storage import leases, requests
from storage.amounts import text_id
from storage.database import Database
from storage.errors import InvalidInput
from storage.leases import Replica
from storage.lifecycle import RequestOp
from storage.limits import Clock, system_clock
from storage.sql import Connection

MAX_EVENT_CHARS = 262_144


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    event_id: str
    event: str  # the signed event, serialized
    recipient: str | None = None
    relays: tuple[str, ...] = ()  # where to publish beyond the agent's own write relays
    deliver_to: tuple[str, ...] = ()  # those of them one of which must accept it (): any relay


@dataclass(frozen=True, slots=True)
class OutboxItem:
    event_id: str
    key: str
    seq: int
    recipient: str | None
    event: str
    relays: tuple[str, ...]
    sent: bool
    attempts: int
    created_at: int
    deliver_to: tuple[str, ...]


_COLUMNS = "event_id, key, seq, recipient, event, relays, state, attempts, created_at, deliver_to"


def _item(row: tuple[object, ...]) -> OutboxItem:
    return OutboxItem(
        str(row[0]), str(row[1]), int(str(row[2])), None if row[3] is None else str(row[3]),
        str(row[4]), tuple(json.loads(str(row[5]))), row[6] == "sent", int(str(row[7])),
        int(str(row[8])), tuple(json.loads(str(row[9]))),
    )


def _check_relays(relays: object) -> None:
    if not isinstance(relays, tuple) or len(relays) > 64 or not all(
            isinstance(url, str) and 0 < len(url) <= 512 for url in relays):
        raise InvalidInput("relays must be a tuple of at most 64 urls")


def _check(key: str, events: Sequence[OutgoingEvent]) -> None:
    text_id(key, "key")
    if not events:
        raise InvalidInput("a message needs at least one event")
    for ev in events:
        text_id(ev.event_id, "event_id", 128)
        if not isinstance(ev.event, str) or not 0 < len(ev.event) <= MAX_EVENT_CHARS:
            raise InvalidInput(f"an event must be text of at most {MAX_EVENT_CHARS} characters")
        if ev.recipient is not None:
            text_id(ev.recipient, "recipient", 128)
        _check_relays(ev.relays)
        _check_relays(ev.deliver_to)


class Outbox:
    """``Outbox(db)``: store messages before publishing them; see the module docstring.

    ``replica``: this process among the agents sharing the database. An event is stored leased
    to the replica that stores it, which publishes it; ``claim_pending`` hands a replica the
    pending events whose lease is its own, free or expired (``storage.leases``)."""

    def __init__(self, db: Database, clock: Clock = system_clock,
                 replica: Replica | None = None) -> None:
        self.db = db
        self.clock = clock
        self.replica = replica or Replica()

    async def add(
        self,
        key: str,
        events: Sequence[OutgoingEvent],
        *,
        request_id: str | None = None,
        request_op: RequestOp | None = None,
    ) -> bool:
        """Store the message ``key`` (False, and nothing stored, if it exists); in the same
        transaction apply ``request_op`` to ``request_id``."""
        _check(key, events)
        now, me = self.clock(), self.replica

        def run(conn: Connection) -> bool:
            if request_id is not None and request_op is not None:
                requests.move(conn, request_id, request_op, now)
            if conn.execute("SELECT 1 FROM outbox WHERE key = ?", (key,)).fetchone():
                return False
            for seq, ev in enumerate(events):
                conn.execute(
                    f"INSERT INTO outbox ({_COLUMNS}, lease_owner, lease_until)"  # noqa: S608
                    " VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
                    (ev.event_id, key, seq, ev.recipient, ev.event, json.dumps(list(ev.relays)),
                     now, json.dumps(list(ev.deliver_to)), me.id, now + me.lease_s),
                )
            return True

        return await self.db.write(run)

    async def has(self, key: str) -> bool:
        text_id(key, "key")
        return await self.db.read(lambda conn: conn.execute(
            "SELECT 1 FROM outbox WHERE key = ?", (key,)).fetchone() is not None)

    async def message(self, key: str) -> list[OutboxItem]:
        text_id(key, "key")
        rows = await self.db.read(lambda conn: conn.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE key = ? ORDER BY seq", (key,)).fetchall())  # noqa: S608
        return [_item(r) for r in rows]

    async def key_of(self, event_id: str) -> str | None:
        """The message an event belongs to (e.g. which quote a zap's ``e`` tag names)."""
        text_id(event_id, "event_id", 128)
        row = await self.db.read(lambda conn: conn.execute(
            "SELECT key FROM outbox WHERE event_id = ?", (event_id,)).fetchone())
        return None if row is None else str(row[0])

    async def backlog(self) -> int:
        """How many events are pending (counted, none of them read)."""
        row = await self.db.read(lambda conn: conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone())
        return int(row[0])

    async def claim_pending(self, limit: int = 1000) -> list[OutboxItem]:
        """Pending events this replica may publish (its own, or another's whose lease is free
        or expired), oldest first, now leased to it. Reads only while there are none."""
        now, me = self.clock(), self.replica
        select = (f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' AND {leases.FREE}"  # noqa: S608
                  " ORDER BY created_at, rowid LIMIT ?")
        if not await self.db.read(lambda conn: conn.execute(
                select, (me.id, now, limit)).fetchone()):
            return []

        def run(conn: Connection) -> list[OutboxItem]:
            items = [_item(r) for r in conn.execute(select, (me.id, now, limit)).fetchall()]
            for item in items:
                conn.execute("UPDATE outbox SET lease_owner = ?, lease_until = ?"
                             " WHERE event_id = ?", (me.id, now + me.lease_s, item.event_id))
            return items

        return await self.db.write(run)

    async def mark_sent(self, event_ids: Sequence[str]) -> None:
        """Events a relay accepted: no longer pending (one write for all of them)."""
        for event_id in event_ids:
            text_id(event_id, "event_id", 128)
        now = self.clock()

        def run(conn: Connection) -> None:
            for event_id in event_ids:
                conn.execute(
                    "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1,"
                    " lease_owner = NULL, lease_until = 0 WHERE event_id = ?", (now, event_id))

        if event_ids:
            await self.db.write(run)

    async def route(self, event_id: str, relays: tuple[str, ...],
                    deliver_to: tuple[str, ...]) -> None:
        """Where a pending event goes from now on (the asker's relays, learnt after it was
        stored): published there when retried, and pending until one of ``deliver_to``
        accepts it. An event already sent is left as it is."""
        text_id(event_id, "event_id", 128)
        _check_relays(relays)
        _check_relays(deliver_to)
        await self.db.write(lambda conn: conn.execute(
            "UPDATE outbox SET relays = ?, deliver_to = ? WHERE event_id = ? AND state = 'pending'",
            (json.dumps(list(relays)), json.dumps(list(deliver_to)), event_id)) and None)

    async def mark_attempt(self, event_id: str) -> None:
        """One more attempt refused or unanswered; this replica keeps the event (its lease is
        extended) and retries it."""
        text_id(event_id, "event_id", 128)
        now, me = self.clock(), self.replica
        await self.db.write(lambda conn: conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, lease_owner = ?, lease_until = ?"
            " WHERE event_id = ?", (me.id, now + me.lease_s, event_id)) and None)
