"""The decision per request, in SPEC §1's order, as one atomic step.

- ``free``: the pool and the asker's allowance cover the whole estimate; the pool is reserved now.
- ``session``: the asker's available prepaid balance covers what the subsidy leaves to pay
  (``estimate - room``); the subsidy is reserved from the pool now (as for a free answer: a
  session is synchronous, so no unpaid invoice can lock pool funds) and the rest of the
  estimate is held from the balance, so the balance never has to pay the pool's share.
- ``partial``: the pool covers part (advisory, nothing moved); the asker is invoiced the rest.
- ``gate``: no subsidy; the asker is invoiced the whole estimate.

``quote`` computes the decision and reads only (``decide_dry_run`` is exactly ``quote``);
``decide`` computes the same decision and makes its moves inside one transaction, so no other
decision can take the pool or the balance between the choice and the reservation.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage import subsidy
from storage.accounts import (
    POOL,
    REVENUE,
    TRANSFER_ID,
    AccountsRead,
    Meta,
    TransferReads,
    ask_accounts,
    ask_transfer,
    balance_account,
    transfer,
)
from storage.errors import IdempotencyConflict
from storage.limits import Limits, utc_day
from storage.operations import ask_once, job_key, once_with
from storage.outcomes import Decision, Reason, Serve
from storage.prefetch import Prefetched, job_scope
from storage.sql import Connection, Cursor, Held

_INSERT_JOB = (
    "INSERT INTO jobs (id, pubkey, serve, state, estimate_msat, absorb_msat,"  # noqa: S608
    " work_amount_msat, reserved_msat, reserve_transfer, reserve_day, hold_transfer,"
    f" created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ({TRANSFER_ID}), ?,"
    f" ({TRANSFER_ID}), ?, ?)"
)
"""A new job; its reservation and hold recorded by their transfers' keys (NULL: none)."""


@dataclass(frozen=True, slots=True)
class QuoteReads:
    """What ``quote`` reads, asked for ahead (``ask_quote``): ``room``'s reads (None: not
    subsidised) and the accounts, the asker's balance and (subsidised) the pool, in one
    statement."""

    room: subsidy.RoomReads | None
    accounts: AccountsRead

    @property
    def held(self) -> tuple[Held, ...]:
        return (() if self.room is None else self.room.held) + (self.accounts.held,)


def ask_quote(conn: Connection, limits: Limits, pubkey: str, day: str,
              subsidised: bool = True) -> QuoteReads:
    """Ask for everything ``quote`` may read (one round trip)."""
    balance = balance_account(pubkey)
    if not subsidised:
        return QuoteReads(None, ask_accounts(conn, (balance,)))
    accounts = ask_accounts(conn, (POOL, balance))
    return QuoteReads(subsidy.ask_room(conn, limits, pubkey, day, accounts), accounts)


def quote(
    conn: Connection, limits: Limits, job_id: str, pubkey: str, estimate: int, day: str,
    subsidised: bool = True, asked: QuoteReads | None = None,
) -> Decision:
    """The decision for now; reads only. ``subsidised=False``: the pool gives nothing (session
    or gate only). ``asked``: its reads, asked for ahead (``ask_quote``)."""
    reads = ask_quote(conn, limits, pubkey, day, subsidised) if asked is None else asked
    room, reason = (subsidy.room(conn, limits, pubkey, day, reads.room)
                    if reads.room is not None else (0, Reason.PAID_ONLY))
    balance = reads.accounts.get(balance_account(pubkey))
    if room >= estimate:
        return Decision(job_id, pubkey, Serve.FREE, Reason.COVERED, estimate, estimate, 0, 0)
    if balance.available_msat >= estimate - room:
        return Decision(job_id, pubkey, Serve.SESSION, reason, estimate, room, estimate - room,
                        estimate - room)
    if room > 0:
        return Decision(job_id, pubkey, Serve.PARTIAL, reason, estimate, room, estimate - room, 0)
    return Decision(job_id, pubkey, Serve.GATE, reason, estimate, 0, estimate, 0)


@dataclass(frozen=True, slots=True)
class DecideReads:
    """What ``decide`` reads, asked for ahead (``ask_decide``): its idempotency lookup, whether
    the job exists, the quote's reads and the pool reservation's (None: not subsidised)."""

    lookup: Cursor
    exists: Cursor
    quoting: QuoteReads
    reserving: TransferReads | None


def ask_decide(conn: Connection, limits: Limits, job_id: str, pubkey: str, now: int,
               subsidised: bool = True) -> DecideReads:
    """Ask for every read ``decide`` may need (one round trip; nothing before the reservation
    writes the pool's account)."""
    quoting = ask_quote(conn, limits, pubkey, utc_day(now), subsidised)
    return DecideReads(
        ask_once(conn, job_key(job_id, "decide")),
        conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)),
        quoting,
        ask_transfer(conn, job_key(job_id, "reserve"), POOL, quoting.accounts)
        if subsidised else None,
    )


def decide(
    conn: Connection, limits: Limits, job_id: str, pubkey: str, estimate: int, now: int,
    subsidised: bool = True, asked: DecideReads | None = None,
) -> Decision:
    """Decide and record the job, making the decision's moves in this same transaction.

    Every read it may need comes back with the idempotency lookup (one round trip on
    PostgreSQL, or none of its own when ``asked``: its reads asked for ahead, ``ask_decide``);
    the job records its transfers by key, reading nothing back."""
    day = utc_day(now)
    reserve_key, hold_key = job_key(job_id, "reserve"), job_key(job_id, "hold")
    reads = ask_decide(conn, limits, job_id, pubkey, now, subsidised) if asked is None else asked
    quoting, reserving = reads.quoting, reads.reserving

    def compute(existing: tuple[object, ...] | None) -> Decision:
        if existing is not None:
            raise IdempotencyConflict(f"job {job_id} already exists")
        d = quote(conn, limits, job_id, pubkey, estimate, day, subsidised, quoting)
        reserved = d.absorb_msat if d.serve in (Serve.FREE, Serve.SESSION) else 0
        if reserved:
            subsidy.reserve(conn, reserve_key, job_id, pubkey, day, reserved, now, reserving)
        held = d.serve is Serve.SESSION and d.hold_msat > 0
        if held:
            transfer(
                conn,
                hold_key,
                balance_account(pubkey),
                REVENUE,
                d.hold_msat,
                Meta("session", now, job_id, pubkey),
                pending=True,
            )
        running = d.serve in (Serve.FREE, Serve.SESSION)
        conn.execute(
            _INSERT_JOB,
            (
                job_id,
                pubkey,
                d.serve.value,
                "running" if running else "quoted",
                estimate,
                d.absorb_msat,
                d.work_amount_msat,
                reserved,
                reserve_key if reserved else None,
                day if reserved else None,
                hold_key if held else None,
                now,
                now,
            ),
        )
        return d

    args: list[object] = [pubkey, estimate] if subsidised else [pubkey, estimate, "paid_only"]
    held_reads = quoting.held + (() if reserving is None else reserving.held)
    return once_with(conn, job_key(job_id, "decide"), "decide", args, Decision, reads.exists,
                     compute, held_reads, reads.lookup)


def prefetched_decide(limits: Limits, job_id: str, pubkey: str, estimate: int, now: int,
                      subsidised: bool = True) -> Prefetched[DecideReads, Decision]:
    """``decide`` as a write whose reads a batch may ask ahead (``storage.prefetch``)."""
    return Prefetched(
        (job_scope(job_id),),
        lambda conn: ask_decide(conn, limits, job_id, pubkey, now, subsidised),
        lambda conn, asked: decide(conn, limits, job_id, pubkey, estimate, now, subsidised,
                                   asked),
    )
