"""Leases: which replica works a request, publishes an outbox event or sends a payout, and until
when — so that several agent processes ("replicas") can share one database.

A lease is two columns on the row: ``lease_owner`` (a replica's id) and ``lease_until`` (epoch
seconds). A replica may act on a row whose lease is its own, free (no owner) or expired
(``lease_until <= now``); taking one is a single conditional ``UPDATE``, made atomic across
processes by the database's write lock, so of two replicas racing for a row exactly one gets it.
A replica that dies stops renewing: its rows become free when their leases expire and another
replica takes them over. Leases protect the work from being done twice *routinely*; every step
under them stays idempotent (ledger operations keyed by the job, outbox keys stored once), so a
replica that loses a lease while it is frozen can do no more than repeat a step.

Rows and when their lease is taken and given back:

- ``requests``: taken in ``Intake.record`` (the same transaction that records the request, so the
  live path pays no extra write) or by ``Intake.take_lease``; renewed while the work runs; given
  back with the state move that sends the request's reply (``open``: the job waits on the
  asker's payment; ``closed``), or by ``release_lease``.
- ``outbox``: taken in ``Outbox.add`` (the same insert) or by ``Outbox.claim_pending`` (another
  replica's event left pending past its lease); given back when a relay accepts it.
- ``payouts``: taken in ``Ledger.begin_payout`` (the same transaction) or by
  ``Ledger.claim_payout`` before the wallet is asked to pay or looked up, so a payout is sent by
  one replica only; it lasts at least ``PAYOUT_LEASE_S`` and lapses by itself.

A replica's id is ``host:pid:token``. At start, leases held by a process of the same host that
no longer runs (``dead_here``: the previous run of this very agent, killed) are freed at once
rather than waited out; other hosts' leases are only ever waited out.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from storage.errors import InvalidInput
from storage.sql import Connection

WORK_CHANNEL: Final = "timmy_work"
"""The notification channel on which a replica that gives work back (stopping, or freeing a
dead replica's leases) wakes the others (PostgreSQL ``pg_notify``; see ``Database.wait_notice``)."""
DEFAULT_LEASE_S: Final = 30
PAYOUT_LEASE_S: Final = 600
MIN_LEASE_S: Final = 3
MAX_LEASE_S: Final = 3600
LEASED_TABLES: Final = ("requests", "outbox", "payouts")
_UNFINISHED: Final = {
    "requests": "state IN ('new', 'open')",
    "outbox": "state = 'pending'",
    "payouts": "state = 'sending'",
}


def replica_id() -> str:
    """A fresh id for this process: ``host:pid:token`` (the host name cut to 48 characters)."""
    host = "".join(c for c in socket.gethostname() if c.isprintable() and c != ":")[:48]
    return f"{host or 'host'}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class Replica:
    """This process as one of the agents sharing a database: its id and how long its leases
    last (``lease_s``; renewed every third of it while the work runs)."""

    lease_s: int = DEFAULT_LEASE_S
    id: str = field(default_factory=replica_id)

    def __post_init__(self) -> None:
        if type(self.lease_s) is not int or not MIN_LEASE_S <= self.lease_s <= MAX_LEASE_S:
            raise InvalidInput(f"lease_s must be an int in {MIN_LEASE_S}..{MAX_LEASE_S}")
        if (not isinstance(self.id, str) or not 0 < len(self.id) <= 128
                or not self.id.isprintable()):
            raise InvalidInput("a replica id must be printable text of 1..128 characters")


def dead_here(owner: str, me: Replica) -> bool:
    """Whether ``owner`` was a process of this host that no longer runs (an earlier run of this
    agent). Unknown shapes, other hosts and live processes are not dead."""
    parts = owner.split(":")
    mine = me.id.split(":")
    if len(parts) < 3 or len(mine) < 3 or owner == me.id:
        return False
    host, pid_text = ":".join(parts[:-2]), parts[-2]
    if host != ":".join(mine[:-2]) or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():  # our pid, another token: this host's earlier run (a container's pid 1)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


FREE: Final = "(lease_owner IS NULL OR lease_owner = ? OR lease_until <= ?)"
"""SQL: the row's lease is the caller's, free or expired (parameters: owner, now)."""


def take_request(conn: Connection, request_id: str, me: Replica, now: int) -> bool:
    """Take (or renew) the lease of an unfinished request unless another live replica holds it."""
    cur = conn.execute(
        "UPDATE requests SET lease_owner = ?, lease_until = ? WHERE id = ?"
        " AND state IN ('new', 'open')"
        " AND (lease_owner IS NULL OR lease_owner = ? OR lease_until <= ?)",
        (me.id, now + me.lease_s, request_id, me.id, now))
    return cur.rowcount == 1


def renew_requests(conn: Connection, request_ids: Sequence[str], me: Replica,
                   now: int) -> int:
    """Extend the leases ``me`` still holds among ``request_ids``; how many."""
    renewed = 0
    for request_id in request_ids:
        renewed += conn.execute(
            "UPDATE requests SET lease_until = ? WHERE id = ? AND lease_owner = ?"
            " AND state IN ('new', 'open')", (now + me.lease_s, request_id, me.id)).rowcount
    return renewed


def release_request(conn: Connection, request_id: str, me: Replica) -> None:
    conn.execute("UPDATE requests SET lease_owner = NULL, lease_until = 0"
                 " WHERE id = ? AND lease_owner = ?", (request_id, me.id))


def release_all(conn: Connection, owner: str) -> int:
    """Free every lease ``owner`` holds (a replica stopping, or a dead one's); how many."""
    freed = 0
    for table in LEASED_TABLES:
        freed += conn.execute(
            f"UPDATE {table} SET lease_owner = NULL, lease_until = 0"  # noqa: S608
            " WHERE lease_owner = ?", (owner,)).rowcount
    return freed


def announce(conn: Connection, engine: str) -> None:
    """Wake the other replicas when this write commits (PostgreSQL; SQLite has no way)."""
    if engine == "postgresql":
        conn.execute("SELECT pg_notify(?, '')", (WORK_CHANNEL,))


def owners(conn: Connection) -> list[str]:
    """Every replica holding a lease on an unfinished row."""
    found: set[str] = set()
    for table in LEASED_TABLES:
        found.update(str(r[0]) for r in conn.execute(
            f"SELECT DISTINCT lease_owner FROM {table}"  # noqa: S608
            f" WHERE lease_owner IS NOT NULL AND {_UNFINISHED[table]}"))
    return sorted(found)


def next_expiry(conn: Connection, me: Replica, now: int) -> int | None:
    """When the next lease another replica holds on an unfinished request or outbox event
    expires (``None``: none is held): the moment its work may be taken over."""
    soonest: int | None = None
    for table in ("requests", "outbox"):
        row = conn.execute(
            f"SELECT MIN(lease_until) FROM {table} WHERE lease_owner IS NOT NULL"  # noqa: S608
            f" AND lease_owner <> ? AND lease_until > ? AND {_UNFINISHED[table]}",
            (me.id, now)).fetchone()
        if row[0] is not None and (soonest is None or int(row[0]) < soonest):
            soonest = int(row[0])
    return soonest


def take_payout(conn: Connection, payout_id: int, me: Replica, now: int) -> bool:
    """Take the lease of a payout still ``sending``: the one replica that may ask the wallet.
    It lasts at least ``PAYOUT_LEASE_S`` (longer than any wallet call: it is not renewed while
    the payment is under way)."""
    cur = conn.execute(
        "UPDATE payouts SET lease_owner = ?, lease_until = ? WHERE id = ? AND state = 'sending'"
        " AND (lease_owner IS NULL OR lease_owner = ? OR lease_until <= ?)",
        (me.id, now + max(me.lease_s, PAYOUT_LEASE_S), payout_id, me.id, now))
    return cur.rowcount == 1


def check_owners(names: Sequence[str]) -> list[str]:
    out = []
    for name in names:
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            raise InvalidInput("a lease owner must be text of 1..128 characters")
        out.append(name)
    return out
