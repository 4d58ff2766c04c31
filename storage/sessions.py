"""Sessions: served at once from a prepaid balance, no invoice per request.

``decide`` holds the estimate from the balance (a pending transfer); after the work the subsidy is
``min(actual, advisory)`` if the pool and limits still cover it, else 0, and the balance is
charged ``actual - subsidy``; the rest of the hold is released.
"""

from __future__ import annotations

import sqlite3

from storage import subsidy
from storage.accounts import Meta, resolve
from storage.errors import IllegalTransition, InvalidAmount
from storage.jobs import get_job, set_job
from storage.limits import Limits, utc_day
from storage.operations import job_key, once
from storage.outcomes import SessionSettlement


def session_settle(
    conn: sqlite3.Connection, limits: Limits, job_id: str, actual: int, now: int
) -> SessionSettlement:
    day = utc_day(now)

    def compute() -> SessionSettlement:
        job = get_job(conn, job_id)
        if job.serve != "session" or job.state != "running":
            raise IllegalTransition(f"job {job_id} ({job.serve}) is {job.state}")
        if actual > job.estimate_msat:
            raise InvalidAmount(f"actual cost {actual} exceeds the estimate {job.estimate_msat}")
        target = min(actual, job.absorb_msat)
        absorbed = 0
        if target > 0 and subsidy.room(conn, limits, job.pubkey, day)[0] >= target:
            subsidy.spend(conn, job_key(job_id, "subsidy"), job_id, job.pubkey, day, target, now)
            absorbed = target
        charged = actual - absorbed
        assert job.hold_transfer is not None
        resolve(
            conn,
            job_key(job_id, "hold:settle"),
            job.hold_transfer,
            charged,
            Meta("session", now, job_id, job.pubkey),
        )
        set_job(
            conn,
            job,
            now,
            state="done",
            actual_msat=actual,
            absorbed_msat=absorbed,
            charged_msat=charged,
        )
        return SessionSettlement(job_id, actual, absorbed, charged, job.estimate_msat - charged)

    return once(
        conn, job_key(job_id, "settle"), "session_settle", [actual], SessionSettlement, compute
    )
