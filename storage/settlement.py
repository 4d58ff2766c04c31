"""After the work: grants of free jobs, settlement of partial and gate jobs, failures.

The seed's math, with ``actual`` the real cost (never above the estimate):
partial: the user pays ``max(0, actual - absorb)``, the pool keeps ``min(actual, absorb)``, the
rest of the paid work amount is a pending refund; gate: refund ``work_amount - actual``; free:
the pool keeps ``actual`` and the over-reservation returns (``record_grant``). A failure releases
every reservation or hold and makes whatever was paid a pending refund.
"""

from __future__ import annotations

import sqlite3

from storage import subsidy
from storage.accounts import ESCROW, REFUNDS, REVENUE, Meta, resolve, transfer
from storage.errors import IllegalTransition, InvalidAmount, InvalidInput
from storage.jobs import get_job, set_job
from storage.operations import job_key, once
from storage.outcomes import Failure, GrantOutcome, JobRecord, Settlement


def _settle_reservation(conn: sqlite3.Connection, job: JobRecord, keep: int, now: int) -> int:
    """Post ``keep`` of the job's pool reservation (void it when 0); return what was released."""
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
    )


def _grant(conn: sqlite3.Connection, job: JobRecord, actual: int, now: int) -> GrantOutcome:
    returned = _settle_reservation(conn, job, actual, now)
    set_job(conn, job, now, state="done", actual_msat=actual, absorbed_msat=actual, charged_msat=0)
    return GrantOutcome(job.id, actual, returned)


def record_grant(
    conn: sqlite3.Connection, pubkey: str, job_id: str, actual: int, reserved: int, now: int
) -> GrantOutcome:
    def compute() -> GrantOutcome:
        job = get_job(conn, job_id)
        if job.pubkey != pubkey:
            raise InvalidInput(f"job {job_id} belongs to another pubkey")
        if job.serve != "free":
            raise IllegalTransition(f"job {job_id} is {job.serve}: use settle")
        if job.state != "running":
            raise IllegalTransition(f"job {job_id} is {job.state}")
        if reserved != job.reserved_msat:
            raise InvalidAmount(
                f"reserved_absorbed {reserved} differs from the job's"
                f" reservation {job.reserved_msat}"
            )
        return _grant(conn, job, actual, now)

    return once(
        conn,
        job_key(job_id, "grant"),
        "record_grant",
        [pubkey, actual, reserved],
        GrantOutcome,
        compute,
    )


def settle(conn: sqlite3.Connection, job_id: str, actual: int, now: int) -> Settlement:
    def compute() -> Settlement:
        job = get_job(conn, job_id)
        if actual > job.estimate_msat:
            raise InvalidAmount(f"actual cost {actual} exceeds the estimate {job.estimate_msat}")
        if job.serve == "free" and job.state == "running":
            return Settlement(job_id, actual, 0, _grant(conn, job, actual, now).absorbed_msat, 0)
        if job.serve not in ("partial", "gate") or job.state != "paid":
            raise IllegalTransition(f"job {job_id} ({job.serve}) is {job.state}: nothing to settle")
        partial = job.serve == "partial"
        keep = min(actual, job.absorb_msat) if partial else 0
        if partial:
            _settle_reservation(conn, job, keep, now)
        charge = max(0, actual - job.absorb_msat) if partial else actual
        refund = job.paid_msat - charge
        meta = Meta("settle", now, job_id, job.pubkey)
        if charge:
            transfer(conn, job_key(job_id, "revenue"), ESCROW, REVENUE, charge, meta)
        changes: dict[str, object] = {}
        if refund:
            transfer(conn, job_key(job_id, "refund"), ESCROW, REFUNDS, refund, meta)
            changes = {"refund_state": "pending", "refund_msat": refund}
        set_job(
            conn,
            job,
            now,
            state="done",
            actual_msat=actual,
            absorbed_msat=keep,
            charged_msat=charge,
            **changes,
        )
        return Settlement(job_id, actual, charge, keep, refund)

    return once(conn, job_key(job_id, "settle"), "settle", [actual], Settlement, compute)


def fail_job(conn: sqlite3.Connection, job_id: str, reason: str, now: int) -> Failure:
    def compute() -> Failure:
        job = get_job(conn, job_id)
        if job.state not in ("running", "paid", "quoted", "invoiced"):
            raise IllegalTransition(f"job {job_id} is {job.state}: it cannot fail now")
        released = 0
        if job.reserve_transfer is not None:
            released += _settle_reservation(conn, job, 0, now)
        if job.hold_transfer is not None:
            resolve(
                conn,
                job_key(job_id, "hold:settle"),
                job.hold_transfer,
                0,
                Meta("session", now, job_id, job.pubkey),
            )
            released += job.estimate_msat
        changes: dict[str, object] = {}
        refund = job.paid_msat if job.state == "paid" else 0
        if refund:
            transfer(
                conn,
                job_key(job_id, "refund"),
                ESCROW,
                REFUNDS,
                refund,
                Meta("failed", now, job_id, job.pubkey),
            )
            changes = {"refund_state": "pending", "refund_msat": refund}
        set_job(conn, job, now, state="failed", error=reason, **changes)
        return Failure(job_id, released, refund)

    return once(conn, job_key(job_id, "fail"), "fail_job", [], Failure, compute)
