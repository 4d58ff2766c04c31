"""Pool subsidy: how much may be absorbed now, reserving it, and correcting it to actuals.

The daily counters (``daily_usage`` per pubkey and UTC day, ``pool_daily`` per day) are counted on
reservation and corrected when a reservation is posted for less or voided, always on the day the
reservation was made. They always equal what the journal shows (``storage.check`` verifies it).
"""

from __future__ import annotations

from dataclasses import dataclass

from storage import prefetch
from storage.accounts import (
    POOL,
    SUBSIDY,
    AccountsRead,
    Meta,
    ResolveReads,
    TransferReads,
    ask_accounts,
    resolve,
    transfer,
)
from storage.limits import Limits
from storage.outcomes import Reason
from storage.sql import Connection, Cursor, Held


def usage(conn: Connection, pubkey: str, day: str) -> tuple[int, int]:
    return _usage_from(_ask_usage(conn, pubkey, day).fetchone())


def _ask_usage(conn: Connection, pubkey: str, day: str) -> Cursor:
    return conn.execute(
        "SELECT absorbed_msat, jobs FROM daily_usage WHERE pubkey = ? AND day = ?", (pubkey, day)
    )


def _usage_from(row: tuple[int, int] | None) -> tuple[int, int]:
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def pool_spent(conn: Connection, day: str) -> int:
    return _spent_from(_ask_pool_spent(conn, day).fetchone())


def _ask_pool_spent(conn: Connection, day: str) -> Cursor:
    return conn.execute("SELECT spent_msat FROM pool_daily WHERE day = ?", (day,))


def _spent_from(row: tuple[int] | None) -> int:
    return 0 if row is None else int(row[0])


@dataclass(frozen=True, slots=True)
class RoomReads:
    """What ``room`` reads, asked for ahead (``ask_room``): the asker's usage of the day, the
    pool's account (among ``accounts``), the pool's spending of the day (None: no daily cap)."""

    usage: Held
    accounts: AccountsRead
    spent: Held | None

    @property
    def held(self) -> tuple[Held, ...]:
        return (self.usage, self.accounts.held) + (() if self.spent is None else (self.spent,))


def ask_room(conn: Connection, limits: Limits, pubkey: str, day: str,
             accounts: AccountsRead | None = None) -> RoomReads:
    """Ask for what ``room`` reads (they come back in one round trip). ``accounts``: the pool's
    account is among these, asked already."""
    return RoomReads(Held(_ask_usage(conn, pubkey, day), prefetch.usage_since(pubkey, day)),
                     accounts if accounts is not None else ask_accounts(conn, (POOL,)),
                     None if limits.pool_daily_cap_msat is None
                     else Held(_ask_pool_spent(conn, day), prefetch.spent_since(day)))


def room(conn: Connection, limits: Limits, pubkey: str, day: str,
         asked: RoomReads | None = None) -> tuple[int, Reason]:
    """The most the pool may absorb for ``pubkey`` now, and the limit that binds it.
    ``asked``: its reads, asked for ahead (``ask_room``)."""
    cap = limits.pool_daily_cap_msat
    reads = ask_room(conn, limits, pubkey, day) if asked is None else asked
    absorbed, jobs = _usage_from(reads.usage.fetchone())
    pool = reads.accounts.get(POOL)
    spent = 0 if reads.spent is None else _spent_from(reads.spent.fetchone())
    if jobs >= limits.daily_free_jobs:
        return 0, Reason.JOBS_LIMIT
    candidates = [
        (pool.available_msat, Reason.POOL_SHORT),
        (limits.daily_free_msat - absorbed, Reason.ALLOWANCE_SHORT),
    ]
    if cap is not None:
        candidates.append((cap - spent, Reason.POOL_CAP))
    amount, reason = min(candidates, key=lambda c: c[0])
    return max(0, amount), reason


def count(conn: Connection, pubkey: str, day: str, amount: int, jobs: int) -> None:
    """Add ``amount`` msat and ``jobs`` jobs (negative: a correction) to the day's counters."""
    prefetch.counted(pubkey, day, amount, jobs)
    if amount >= 0 and jobs >= 0:
        conn.execute(
            "INSERT INTO daily_usage (pubkey, day, absorbed_msat, jobs) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (pubkey, day) DO UPDATE SET"
            " absorbed_msat = daily_usage.absorbed_msat + excluded.absorbed_msat,"
            " jobs = daily_usage.jobs + excluded.jobs",
            (pubkey, day, amount, jobs),
        )
        conn.execute(
            "INSERT INTO pool_daily (day, spent_msat) VALUES (?, ?)"
            " ON CONFLICT (day) DO UPDATE SET"
            " spent_msat = pool_daily.spent_msat + excluded.spent_msat",
            (day, amount),
        )
        return
    # A correction: the rows exist (the reservation created them); CHECKs forbid going below 0.
    conn.execute(
        "UPDATE daily_usage SET absorbed_msat = absorbed_msat + ?, jobs = jobs + ?"
        " WHERE pubkey = ? AND day = ?",
        (amount, jobs, pubkey, day),
    )
    conn.execute("UPDATE pool_daily SET spent_msat = spent_msat + ? WHERE day = ?", (amount, day))


def reserve(
    conn: Connection, key: str, job_id: str, pubkey: str, day: str, amount: int, now: int,
    asked: TransferReads | None = None,
) -> None:
    """A pending pool → subsidy transfer of ``amount`` (key ``key``), counted for today.
    ``asked``: the transfer's reads, asked for ahead (``accounts.ask_transfer``)."""
    transfer(conn, key, POOL, SUBSIDY, amount, Meta("subsidy", now, job_id, pubkey, day),
             pending=True, asked=asked)
    count(conn, pubkey, day, amount, 1)


def spend(
    conn: Connection, key: str, job_id: str, pubkey: str, day: str, amount: int, now: int
) -> None:
    """A posted pool → subsidy transfer (sessions: the work is already done)."""
    transfer(conn, key, POOL, SUBSIDY, amount, Meta("subsidy", now, job_id, pubkey, day))
    count(conn, pubkey, day, amount, 1)


def settle(
    conn: Connection,
    key: str,
    job_id: str,
    pubkey: str,
    day: str,
    pending_id: int,
    reserved: int,
    keep: int,
    now: int,
    asked: ResolveReads | None = None,
) -> int:
    """Post ``keep`` of a reservation (void it when 0), correct the counters; return released.
    ``asked``: the resolution's reads, asked for ahead (``accounts.ask_resolve``)."""
    resolve(conn, key, pending_id, keep, Meta("subsidy", now, job_id, pubkey, day), asked=asked)
    released = reserved - keep
    count(conn, pubkey, day, -released, -1 if keep == 0 else 0)
    return released
