"""Job records and their lifecycle, as one table of states and legal moves.

``serve`` is fixed at decision time. States::

    quoted ──attach_invoice──▶ invoiced ──confirm_payment──▶ paid ──start──▶ running
      │                          │          (partial, terms changed / fail)──▶ failed
      └──expire / cancel─────────┴──expire / cancel──▶ expired / cancelled
    running ──settle──▶ done      (free jobs and sessions are running from the decision)
    running ──fail──▶ failed

Refund states: ``none → pending → paying → paid``, ``paying → pending`` (payout failed),
``pending → credited``. An illegal move raises ``IllegalTransition`` and, since every move happens
inside the operation's savepoint, changes nothing.
"""

from __future__ import annotations

import sqlite3

from storage.errors import IllegalTransition, UnknownJob
from storage.outcomes import JobRecord, RefundState

JOB_MOVES: dict[str, frozenset[str]] = {
    "quoted": frozenset({"invoiced", "paid", "expired", "cancelled"}),
    "invoiced": frozenset({"paid", "expired", "cancelled"}),
    "paid": frozenset({"running", "failed"}),
    "running": frozenset({"done", "failed"}),
    "done": frozenset(),
    "failed": frozenset(),
    "expired": frozenset(),
    "cancelled": frozenset(),
}

REFUND_MOVES: dict[str, frozenset[str]] = {
    "none": frozenset({"pending"}),
    "pending": frozenset({"paying", "credited"}),
    "paying": frozenset({"paid", "pending"}),
    "paid": frozenset(),
    "credited": frozenset(),
}

_COLUMNS = (
    "id, pubkey, serve, state, estimate_msat, absorb_msat, work_amount_msat, reserved_msat,"
    " paid_msat, actual_msat, absorbed_msat, charged_msat, invoice_hash, invoice_msat,"
    " invoice_expires_at, refund_state, refund_msat, refund_ref, error, created_at, updated_at,"
    " reserve_transfer, reserve_day, hold_transfer"
)


def _record(row: tuple[object, ...]) -> JobRecord:
    values = list(row)
    values[15] = RefundState(str(values[15]))
    return JobRecord(*values)  # type: ignore[arg-type]


def get_job(conn: sqlite3.Connection, job_id: str) -> JobRecord:
    row = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()  # noqa: S608
    if row is None:
        raise UnknownJob(f"no job {job_id!r}")
    return _record(row)


def find_job(conn: sqlite3.Connection, ref: str) -> JobRecord:
    """A job by its invoice payment hash, else by its id."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE invoice_hash = ?", (ref,)).fetchone()  # noqa: S608
    if row is None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (ref,)).fetchone()  # noqa: S608
    if row is None:
        raise UnknownJob(f"no job or invoice {ref!r}")
    return _record(row)


def recent_jobs(conn: sqlite3.Connection, pubkey: str, limit: int) -> list[JobRecord]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE pubkey = ?"  # noqa: S608
        " ORDER BY created_at DESC, rowid DESC LIMIT ?",
        (pubkey, limit),
    ).fetchall()
    return [_record(r) for r in rows]


def jobs_in_state(conn: sqlite3.Connection, states: tuple[str, ...]) -> list[JobRecord]:
    marks = ", ".join("?" for _ in states)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE state IN ({marks}) ORDER BY created_at, rowid",  # noqa: S608
        states,
    ).fetchall()
    return [_record(r) for r in rows]


def overdue_invoices(conn: sqlite3.Connection, now: int) -> list[JobRecord]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE state = 'invoiced' AND invoice_expires_at < ?"  # noqa: S608
        " ORDER BY invoice_expires_at",
        (now,),
    ).fetchall()
    return [_record(r) for r in rows]


def check_move(job: JobRecord, new_state: str) -> None:
    if new_state not in JOB_MOVES[job.state]:
        raise IllegalTransition(f"job {job.id} is {job.state}; it cannot become {new_state}")


def check_refund_move(job: JobRecord, new_state: RefundState) -> None:
    if new_state.value not in REFUND_MOVES[job.refund_state.value]:
        raise IllegalTransition(
            f"refund of job {job.id} is {job.refund_state.value};"
            f" it cannot become {new_state.value}"
        )


def set_job(conn: sqlite3.Connection, job: JobRecord, now: int, **changes: object) -> None:
    """Update ``job`` (moving its state only along ``JOB_MOVES`` / ``REFUND_MOVES``)."""
    if "state" in changes and changes["state"] != job.state:
        check_move(job, str(changes["state"]))
    if "refund_state" in changes and changes["refund_state"] != job.refund_state:
        check_refund_move(job, RefundState(str(changes["refund_state"])))
    changes["updated_at"] = now
    cols = ", ".join(f"{name} = ?" for name in changes)
    conn.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*changes.values(), job.id))  # noqa: S608
