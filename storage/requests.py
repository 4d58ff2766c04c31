"""Incoming requests, recorded exactly once together with the claims of their event ids.

Storage knows nothing of Nostr: a request is a sender, a protocol name, an opaque text, the id
to reply to and the relays it arrived on. ``record`` claims every given id (an event id, a
gift wrap's rumor id...) and inserts the request in one transaction, so a request is either
recorded with its claims or not at all (and then delivered again after a restart).

States and moves: ``storage.lifecycle.REQUEST_LIFECYCLE`` (``new`` → ``open`` → ``closed``;
``dropped`` for a request never to be answered, a flood). Texts (question, invoice,
answer) are erased after the retention period; money records live in the ledger and stay.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from storage.errors import InvalidInput, NotFound
from storage.leases import Replica
from storage.lifecycle import REQUEST_LIFECYCLE, RequestOp, RequestState
from storage.sql import Connection, Cursor

MAX_BODY_CHARS = 65_536
MAX_RELAYS = 32


@dataclass(frozen=True, slots=True)
class NewRequest:
    id: str
    sender: str
    protocol: str
    body: str | None
    reply_to: str
    relays: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    id: str
    sender: str
    protocol: str
    body: str | None
    reply_to: str
    relays: tuple[str, ...]
    state: RequestState
    invoice: str | None
    answer: str | None
    answer_msat: int | None
    created_at: int
    updated_at: int
    lease_owner: str | None = None  # the replica working it (``storage.leases``)
    lease_until: int = 0


_COLUMNS = (
    "id, sender, protocol, body, reply_to, relays, state, invoice, answer, answer_msat,"
    " created_at, updated_at, lease_owner, lease_until"
)


def _record(row: tuple[object, ...]) -> RequestRecord:
    relays = tuple(json.loads(str(row[5])))
    return RequestRecord(
        str(row[0]), str(row[1]), str(row[2]), None if row[3] is None else str(row[3]),
        str(row[4]), relays, RequestState(str(row[6])),
        None if row[7] is None else str(row[7]), None if row[8] is None else str(row[8]),
        None if row[9] is None else int(str(row[9])), int(str(row[10])), int(str(row[11])),
        None if row[12] is None else str(row[12]), int(str(row[13])),
    )


def check_new_request(req: NewRequest) -> None:
    for name in ("id", "sender", "protocol", "reply_to"):
        value = getattr(req, name)
        if not isinstance(value, str) or not value or len(value) > 512 or not value.isprintable():
            raise InvalidInput(f"request {name} must be a printable string of 1..512 characters")
    if req.body is not None and (not isinstance(req.body, str) or len(req.body) > MAX_BODY_CHARS):
        raise InvalidInput(f"request body must be text of at most {MAX_BODY_CHARS} characters")
    if not isinstance(req.relays, tuple) or len(req.relays) > MAX_RELAYS or not all(
        isinstance(r, str) and 0 < len(r) <= 2048 for r in req.relays
    ):
        raise InvalidInput(f"request relays must be a tuple of at most {MAX_RELAYS} urls")


def record(
    conn: Connection, req: NewRequest, claims: Sequence[str], dropped: bool, now: int,
    lease: Replica | None = None,
) -> RequestRecord | None:
    """Claim ``claims`` and insert ``req`` (``dropped``: never to be answered, text not kept),
    leased to ``lease`` (the replica that will work it) unless dropped.

    ``None`` when the request was recorded before (its claims are still taken, and an arrival
    relay not yet listed is added to it)."""
    for event_id in claims:
        conn.execute(
            "INSERT INTO processed_events (event_id, claimed_at) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            (event_id, now),
        )
    row = conn.execute("SELECT relays FROM requests WHERE id = ?", (req.id,)).fetchone()
    if row is not None:
        known = list(json.loads(str(row[0])))
        extra = [r for r in req.relays if r not in known]
        if extra and len(known) < MAX_RELAYS:
            merged = (known + extra)[:MAX_RELAYS]
            conn.execute("UPDATE requests SET relays = ? WHERE id = ?",
                         (json.dumps(merged), req.id))
        return None
    state = RequestState.DROPPED if dropped else RequestState.NEW
    owner = None if dropped or lease is None else lease.id
    until = 0 if owner is None or lease is None else now + lease.lease_s
    conn.execute(
        f"INSERT INTO requests ({_COLUMNS})"  # noqa: S608
        " VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?, ?, ?)",
        (req.id, req.sender, req.protocol, None if dropped else req.body, req.reply_to,
         json.dumps(list(req.relays)), state.value, now, now, owner, until),
    )
    return get(conn, req.id)


def get(conn: Connection, request_id: str) -> RequestRecord:
    row = conn.execute(f"SELECT {_COLUMNS} FROM requests WHERE id = ?",  # noqa: S608
                       (request_id,)).fetchone()
    if row is None:
        raise NotFound(f"no request {request_id!r}")
    return _record(row)


def unfinished(conn: Connection) -> list[RequestRecord]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM requests WHERE state IN ('new', 'open')"  # noqa: S608
        " ORDER BY created_at, rowid"
    ).fetchall()
    return [_record(r) for r in rows]


def move(conn: Connection, request_id: str, op: RequestOp, now: int) -> None:
    """``op`` on the request (``REQUEST_LIFECYCLE``); a move to where it is changes nothing."""
    current = get(conn, request_id).state
    state = REQUEST_LIFECYCLE.next(current, op, request_id)
    if state is not current:  # a reply sent: waiting on the asker (open) or done; lease given back
        conn.execute("UPDATE requests SET state = ?, updated_at = ?, lease_owner = NULL,"
                     " lease_until = 0 WHERE id = ?", (state.value, now, request_id))


def ask_exists(conn: Connection, request_id: str) -> Cursor:
    """Ask whether the request exists (a row, or none), without reading it."""
    return conn.execute("SELECT 1 FROM requests WHERE id = ?", (request_id,))


def save(conn: Connection, request_id: str, column: str, value: str,
         amount_msat: int | None, now: int, asked: Cursor | None = None) -> None:
    """Keep ``value`` in the request's ``column`` (``NotFound`` when there is no such request).
    ``asked``: whether it exists, asked for ahead (``ask_exists``)."""
    if (ask_exists(conn, request_id) if asked is None else asked).fetchone() is None:
        raise NotFound(f"no request {request_id!r}")
    if column == "invoice":
        conn.execute("UPDATE requests SET invoice = ?, updated_at = ? WHERE id = ?",
                     (value, now, request_id))
    elif column == "answer":
        conn.execute(
            "UPDATE requests SET answer = ?, answer_msat = ?, updated_at = ? WHERE id = ?",
            (value, amount_msat, now, request_id),
        )
    else:
        raise InvalidInput(f"no request column {column!r}")


def history(conn: Connection, sender: str, before: str, limit: int,
            protocols: Sequence[str]) -> list[tuple[str, str]]:
    """``sender``'s last ``limit`` answered questions in ``protocols`` (oldest first),
    excluding ``before``."""
    if not protocols:
        return []
    marks = ", ".join("?" * len(protocols))
    rows = conn.execute(
        "SELECT body, answer FROM requests WHERE sender = ? AND id <> ? AND answer IS NOT NULL"  # noqa: S608
        " AND body IS NOT NULL AND erased = 0"
        f" AND protocol IN ({marks})"
        " ORDER BY created_at DESC, rowid DESC LIMIT ?",
        (sender, before, *protocols, limit),
    ).fetchall()
    return [(str(b), str(a)) for b, a in reversed(rows)]


def erase_before(conn: Connection, cutoff: int) -> int:
    """Erase the texts of finished requests created before ``cutoff``; how many."""
    cur = conn.execute(
        "UPDATE requests SET body = NULL, answer = NULL, invoice = NULL, erased = 1"
        " WHERE erased = 0 AND created_at < ? AND state IN ('closed', 'dropped')",
        (cutoff,),
    )
    return cur.rowcount


def latest(conn: Connection, sender: str) -> RequestRecord | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM requests WHERE sender = ?"  # noqa: S608
        " ORDER BY created_at DESC, rowid DESC LIMIT 1", (sender,)).fetchone()
    return None if row is None else _record(row)
