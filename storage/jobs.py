"""Job records: reading them, and changing them only along the job and refund lifecycles
(``storage.lifecycle``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from storage.errors import UnknownJob
from storage.lifecycle import (
    JOB_LIFECYCLE,
    REFUND_LIFECYCLE,
    JobOp,
    JobState,
    RefundOp,
    RefundState,
)
from storage.outcomes import JobRecord, Serve
from storage.sql import Connection, Cursor

_COLUMNS = (
    "id, pubkey, serve, state, estimate_msat, absorb_msat, work_amount_msat, reserved_msat,"
    " paid_msat, actual_msat, absorbed_msat, charged_msat, invoice_hash, invoice_msat,"
    " invoice_expires_at, refund_state, refund_msat, refund_ref, error, created_at, updated_at,"
    " reserve_transfer, reserve_day, hold_transfer"
)


def _record(row: tuple[object, ...]) -> JobRecord:
    values = list(row)
    values[2] = Serve(str(values[2]))
    values[3] = JobState(str(values[3]))
    values[15] = RefundState(str(values[15]))
    return JobRecord(*values)  # type: ignore[arg-type]


def get_job(conn: Connection, job_id: str) -> JobRecord:
    return job_from_row(ask_job(conn, job_id).fetchone(), job_id)


def ask_job(conn: Connection, job_id: str) -> Cursor:
    """Ask for the job's row (read it with ``job_from_row``): statements asked for before the
    first is read come back in one round trip on PostgreSQL."""
    return conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))  # noqa: S608


def job_from_row(row: tuple[object, ...] | None, ref: str, what: str = "job") -> JobRecord:
    """The job of a row asked for; ``UnknownJob`` ("no {what} {ref!r}") when there is none."""
    if row is None:
        raise UnknownJob(f"no {what} {ref!r}")
    return _record(row)


def ask_found_job(conn: Connection, ref: str) -> Cursor:
    """Ask for the job whose invoice payment hash is ``ref``, else whose id is ``ref`` (read it
    with ``job_from_row(row, ref, "job or invoice")``)."""
    return conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE invoice_hash = ? OR id = ?"  # noqa: S608
        " ORDER BY CASE WHEN invoice_hash = ? THEN 0 ELSE 1 END LIMIT 1",
        (ref, ref, ref),
    )


def recent_jobs(conn: Connection, pubkey: str, limit: int) -> list[JobRecord]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE pubkey = ?"  # noqa: S608
        " ORDER BY created_at DESC, rowid DESC LIMIT ?",
        (pubkey, limit),
    ).fetchall()
    return [_record(r) for r in rows]


def jobs_in_state(conn: Connection, states: tuple[JobState, ...]) -> list[JobRecord]:
    marks = ", ".join("?" for _ in states)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE state IN ({marks}) ORDER BY created_at, rowid",  # noqa: S608
        [s.value for s in states],
    ).fetchall()
    return [_record(r) for r in rows]


def overdue_invoices(conn: Connection, now: int) -> list[JobRecord]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE state = 'invoiced' AND invoice_expires_at < ?"  # noqa: S608
        " ORDER BY invoice_expires_at",
        (now,),
    ).fetchall()
    return [_record(r) for r in rows]


def set_job(
    conn: Connection,
    job: JobRecord,
    now: int,
    op: JobOp | None = None,
    refund_op: RefundOp | None = None,
    **changes: object,
) -> JobRecord:
    """Update ``job``: its state moves by ``op`` and its refund by ``refund_op``, as the
    lifecycle tables say (``IllegalTransition`` otherwise, before anything is written); other
    columns as ``changes`` give them. Returns the record as written (not read back)."""
    assert "state" not in changes and "refund_state" not in changes, "states move by operations"
    states: dict[str, JobState | RefundState] = {}
    if op is not None:
        states["state"] = JOB_LIFECYCLE.next(job.state, op, job.id)
    if refund_op is not None:
        states["refund_state"] = REFUND_LIFECYCLE.next(job.refund_state, refund_op, job.id)
    changes["updated_at"] = now
    columns = {**changes, **{name: state.value for name, state in states.items()}}
    cols = ", ".join(f"{name} = ?" for name in columns)
    conn.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*columns.values(), job.id))  # noqa: S608
    written: dict[str, Any] = {**changes, **states}
    return dataclasses.replace(job, **written)


def move_job(conn: Connection, job_id: str, op: JobOp, now: int,
             asked: Cursor | None = None) -> JobRecord:
    """Move the job by ``op`` alone; a pair the table loops back (a repeat) writes nothing.
    ``asked``: the job, asked for ahead (``ask_job``)."""
    job = job_from_row((ask_job(conn, job_id) if asked is None else asked).fetchone(), job_id)
    if JOB_LIFECYCLE.next(job.state, op, job.id) is job.state:
        return job
    return set_job(conn, job, now, op)
