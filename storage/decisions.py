"""The decision per request: free (pool reserved now), partial (advisory), or gate."""

from __future__ import annotations

import sqlite3

from storage import subsidy
from storage.errors import IdempotencyConflict
from storage.limits import Limits, utc_day
from storage.operations import job_key, once
from storage.outcomes import Decision, Reason, Serve


def quote(
    conn: sqlite3.Connection, limits: Limits, job_id: str, pubkey: str, estimate: int, day: str
) -> Decision:
    """The decision for now; reads only (``decide_dry_run`` is exactly this)."""
    room, reason = subsidy.room(conn, limits, pubkey, day)
    if room >= estimate:
        return Decision(job_id, pubkey, Serve.FREE, Reason.COVERED, estimate, estimate, 0)
    if room > 0:
        return Decision(job_id, pubkey, Serve.PARTIAL, reason, estimate, room, estimate - room)
    return Decision(job_id, pubkey, Serve.GATE, reason, estimate, 0, estimate)


def decide(
    conn: sqlite3.Connection, limits: Limits, job_id: str, pubkey: str, estimate: int, now: int
) -> Decision:
    """Decide and record the job; a free decision reserves the pool in this same transaction."""
    day = utc_day(now)

    def compute() -> Decision:
        if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone():
            raise IdempotencyConflict(f"job {job_id} already exists")
        d = quote(conn, limits, job_id, pubkey, estimate, day)
        free = d.serve is Serve.FREE
        tid = None
        if free:
            tid = subsidy.reserve(
                conn, job_key(job_id, "reserve"), job_id, pubkey, day, estimate, now
            )
        conn.execute(
            "INSERT INTO jobs (id, pubkey, serve, state, estimate_msat, absorb_msat,"
            " work_amount_msat, reserved_msat, reserve_transfer, reserve_day,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                pubkey,
                d.serve.value,
                "running" if free else "quoted",
                estimate,
                d.absorb_msat,
                d.work_amount_msat,
                estimate if free else 0,
                tid,
                day if free else None,
                now,
                now,
            ),
        )
        return d

    return once(conn, job_key(job_id, "decide"), "decide", [pubkey, estimate], Decision, compute)
