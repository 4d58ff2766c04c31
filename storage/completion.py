"""The end of a job: ``settle`` after the work, ``fail`` when it failed or will not run, plus
``start`` (a paid job's work begins) and ``cancel`` (an unpaid job is withdrawn).

``settle`` and ``fail`` take every serve; each keeps the seed's math, with ``actual`` the real
cost (never above the estimate):

- free: the pool keeps ``actual``, the over-reservation returns to it (the seed's
  ``record_grant``);
- session: the pool keeps ``min(actual, reserved)`` of the subsidy reserved at decision time (the
  rest returns to it); the balance is charged ``actual - subsidy`` (never above its hold); the
  rest of the hold is released;
- partial: the user pays ``max(0, actual - absorb)``, the pool keeps ``min(actual, absorb)``, the
  rest of what was paid (the rounding of the invoice to whole sats included) is given back;
- gate: the user pays ``actual``, the rest of what was paid is given back.

A failure releases every reservation or hold and gives back whatever was paid. What is given
back is a pending refund of whole sats, its sub-sat rest the asker's balance (``refunds.owe``).
"""

from __future__ import annotations

from dataclasses import dataclass

from storage import refunds, subsidy
from storage.accounts import (
    ESCROW,
    REVENUE,
    Meta,
    ResolveReads,
    ask_resolve,
    resolve,
    transfer,
)
from storage.errors import InvalidAmount
from storage.jobs import ask_job, job_from_row, move_job, set_job
from storage.lifecycle import JOB_LIFECYCLE, JobOp, RefundOp
from storage.operations import ask_once, job_key, once_with
from storage.outcomes import Completion, Failure, JobRecord, Serve
from storage.prefetch import Prefetched, job_scope
from storage.sql import Connection, Cursor


def _settle_reservation(conn: Connection, job: JobRecord, keep: int, now: int,
                        asked: ResolveReads | None = None) -> int:
    """Post ``keep`` of the job's pool reservation (void it when 0); return what was released.
    ``asked``: its reads, asked for ahead (``_ask_reservation``)."""
    assert job.reserve_transfer is not None
    return subsidy.settle(
        conn,
        job_key(job.id, "reserve:settle"),
        job.id,
        job.pubkey,
        str(job.reserve_day),
        job.reserve_transfer,
        job.reserved_msat,
        keep,
        now,
        asked,
    )


def _ask_reservation(conn: Connection, job_id: str) -> ResolveReads:
    """Ask for what settling the job's pool reservation reads (by the reservation's key: the
    job's ``reserve_transfer`` is that transfer)."""
    return ask_resolve(conn, job_key(job_id, "reserve:settle"), job_key(job_id, "reserve"))


def _resolve_hold(conn: Connection, job: JobRecord, charge: int, now: int) -> int:
    """Post ``charge`` of the session's balance hold (void it when 0); return what was released."""
    assert job.hold_transfer is not None
    meta = Meta("session", now, job.id, job.pubkey)
    resolve(conn, job_key(job.id, "hold:settle"), job.hold_transfer, charge, meta)
    return job.estimate_msat - job.reserved_msat - charge  # the hold is what the subsidy left


def record_grant(conn: Connection, job: JobRecord, actual: int, now: int,
                 reservation: ResolveReads | None = None) -> Completion:
    """A free job: the pool keeps ``actual``; the rest of the reservation returns to it.
    ``reservation``: its settlement's reads, asked for ahead."""
    returned = _settle_reservation(conn, job, actual, now, reservation)
    set_job(conn, job, now, JobOp.SETTLE, actual_msat=actual, absorbed_msat=actual, charged_msat=0)
    return Completion(job.id, Serve.FREE, actual, 0, actual, 0, 0, returned)


def session_settle(conn: Connection, job: JobRecord, actual: int, now: int,
                   reservation: ResolveReads | None = None) -> Completion:
    """A session: the pool keeps ``min(actual, reserved)``; the balance pays the rest of
    ``actual`` from its hold (``actual - absorbed <= estimate - reserved = hold``)."""
    absorbed = min(actual, job.reserved_msat)
    released = (_settle_reservation(conn, job, absorbed, now, reservation)
                if job.reserve_transfer else 0)
    charged = actual - absorbed
    if job.hold_transfer is not None:
        released += _resolve_hold(conn, job, charged, now)
    set_job(
        conn, job, now, JobOp.SETTLE, actual_msat=actual, absorbed_msat=absorbed,
        charged_msat=charged,
    )
    return Completion(job.id, Serve.SESSION, actual, charged, absorbed, 0, 0, released)


def settle_paid(conn: Connection, job: JobRecord, actual: int, now: int,
                reservation: ResolveReads | None = None) -> Completion:
    """A partial or gate job: the seed's refund math on what was paid (held in escrow)."""
    partial = job.serve == Serve.PARTIAL
    keep = min(actual, job.absorb_msat) if partial else 0
    released = _settle_reservation(conn, job, keep, now, reservation) if partial else 0
    charge = max(0, actual - job.absorb_msat) if partial else actual
    meta = Meta("settle", now, job.id, job.pubkey)
    if charge:
        transfer(conn, job_key(job.id, "revenue"), ESCROW, REVENUE, charge, meta)
    refund, rest = refunds.owe(conn, job, job.paid_msat - charge, "settle", now)
    set_job(
        conn, job, now, JobOp.SETTLE, RefundOp.OWE if refund else None, actual_msat=actual,
        absorbed_msat=keep, charged_msat=charge, refund_msat=refund,
    )
    return Completion(job.id, job.serve, actual, charge, keep, refund, rest, released)


@dataclass(frozen=True, slots=True)
class SettleReads:
    """What ``settle`` reads, asked for ahead (``ask_settle``): its idempotency lookup, the job,
    and its pool reservation's resolution reads."""

    lookup: Cursor
    job: Cursor
    reservation: ResolveReads


def ask_settle(conn: Connection, job_id: str) -> SettleReads:
    """Ask for what ``settle`` reads first (one round trip; nothing written before them)."""
    return SettleReads(ask_once(conn, job_key(job_id, "settle")), ask_job(conn, job_id),
                       _ask_reservation(conn, job_id))


def settle(
    conn: Connection, job_id: str, actual: int, now: int, asked: SettleReads | None = None
) -> Completion:
    """``asked``: its first reads, asked for ahead (``ask_settle``)."""
    reads = ask_settle(conn, job_id) if asked is None else asked
    reservation = reads.reservation

    def compute(row: tuple[object, ...] | None) -> Completion:
        job = job_from_row(row, job_id)
        JOB_LIFECYCLE.next(job.state, JobOp.SETTLE, job.id)
        if actual > job.estimate_msat:
            raise InvalidAmount(f"actual cost {actual} exceeds the estimate {job.estimate_msat}")
        if job.serve is Serve.FREE:
            return record_grant(conn, job, actual, now, reservation)
        if job.serve is Serve.SESSION:
            return session_settle(conn, job, actual, now, reservation)
        return settle_paid(conn, job, actual, now, reservation)

    return once_with(conn, job_key(job_id, "settle"), "settle", [actual], Completion,
                     reads.job, compute, reservation.held, reads.lookup)


def prefetched_settle(job_id: str, actual: int,
                      now: int) -> Prefetched[SettleReads, Completion]:
    """``settle`` as a write whose reads a batch may ask ahead (``storage.prefetch``)."""
    return Prefetched((job_scope(job_id),), lambda conn: ask_settle(conn, job_id),
                      lambda conn, asked: settle(conn, job_id, actual, now, asked))


def fail(conn: Connection, job_id: str, reason: str, now: int) -> Failure:
    def compute(row: tuple[object, ...] | None) -> Failure:
        job = job_from_row(row, job_id)
        JOB_LIFECYCLE.next(job.state, JobOp.FAIL, job.id)
        released = 0
        if job.reserve_transfer is not None:
            released += _settle_reservation(conn, job, 0, now)
        if job.hold_transfer is not None:
            released += _resolve_hold(conn, job, 0, now)
        refund, rest = refunds.owe(conn, job, job.paid_msat, "failed", now)
        set_job(
            conn, job, now, JobOp.FAIL, RefundOp.OWE if refund else None, error=reason,
            refund_msat=refund,
        )
        return Failure(job_id, released, refund, rest)

    return once_with(conn, job_key(job_id, "fail"), "fail", [], Failure, ask_job(conn, job_id),
                     compute)


def start(conn: Connection, job_id: str, now: int, asked: Cursor | None = None) -> JobRecord:
    """A paid job's work begins (``paid → running``); a running job is left as it is.
    ``asked``: the job, asked for ahead (``jobs.ask_job``)."""
    return move_job(conn, job_id, JobOp.START, now, asked)


def prefetched_start(job_id: str, now: int) -> Prefetched[Cursor, JobRecord]:
    """``start`` as a write whose read a batch may ask ahead (``storage.prefetch``)."""
    return Prefetched((job_scope(job_id),), lambda conn: ask_job(conn, job_id),
                      lambda conn, asked: start(conn, job_id, now, asked))


def cancel(conn: Connection, job_id: str, now: int) -> JobRecord:
    """An unpaid job is withdrawn (``quoted | invoiced → cancelled``); nothing moves. A job
    already closed unpaid (cancelled, expired) is left as it is."""
    return move_job(conn, job_id, JobOp.CANCEL, now)
