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

from storage import subsidy
from storage.accounts import REVENUE, Meta, available, balance_account, transfer
from storage.errors import IdempotencyConflict
from storage.limits import Limits, utc_day
from storage.operations import job_key, once_with
from storage.outcomes import Decision, Reason, Serve
from storage.sql import Connection


def quote(
    conn: Connection, limits: Limits, job_id: str, pubkey: str, estimate: int, day: str,
    subsidised: bool = True,
) -> Decision:
    """The decision for now; reads only. ``subsidised=False``: the pool gives nothing (session
    or gate only)."""
    room, reason = (subsidy.room(conn, limits, pubkey, day) if subsidised
                    else (0, Reason.PAID_ONLY))
    if room >= estimate:
        return Decision(job_id, pubkey, Serve.FREE, Reason.COVERED, estimate, estimate, 0, 0)
    if available(conn, balance_account(pubkey)) >= estimate - room:
        return Decision(job_id, pubkey, Serve.SESSION, reason, estimate, room, estimate - room,
                        estimate - room)
    if room > 0:
        return Decision(job_id, pubkey, Serve.PARTIAL, reason, estimate, room, estimate - room, 0)
    return Decision(job_id, pubkey, Serve.GATE, reason, estimate, 0, estimate, 0)


def decide(
    conn: Connection, limits: Limits, job_id: str, pubkey: str, estimate: int, now: int,
    subsidised: bool = True,
) -> Decision:
    """Decide and record the job, making the decision's moves in this same transaction."""
    day = utc_day(now)

    def compute(existing: tuple[object, ...] | None) -> Decision:
        if existing is not None:
            raise IdempotencyConflict(f"job {job_id} already exists")
        d = quote(conn, limits, job_id, pubkey, estimate, day, subsidised)
        reserve_tid = hold_tid = None
        reserved = d.absorb_msat if d.serve in (Serve.FREE, Serve.SESSION) else 0
        if reserved:
            reserve_tid = subsidy.reserve(
                conn, job_key(job_id, "reserve"), job_id, pubkey, day, reserved, now
            )
        if d.serve is Serve.SESSION and d.hold_msat:
            hold_tid = transfer(
                conn,
                job_key(job_id, "hold"),
                balance_account(pubkey),
                REVENUE,
                d.hold_msat,
                Meta("session", now, job_id, pubkey),
                pending=True,
            )
        running = d.serve in (Serve.FREE, Serve.SESSION)
        conn.execute(
            "INSERT INTO jobs (id, pubkey, serve, state, estimate_msat, absorb_msat,"
            " work_amount_msat, reserved_msat, reserve_transfer, reserve_day, hold_transfer,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                pubkey,
                d.serve.value,
                "running" if running else "quoted",
                estimate,
                d.absorb_msat,
                d.work_amount_msat,
                reserved,
                reserve_tid,
                day if reserve_tid is not None else None,
                hold_tid,
                now,
                now,
            ),
        )
        return d

    args: list[object] = [pubkey, estimate] if subsidised else [pubkey, estimate, "paid_only"]
    exists = conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,))
    return once_with(conn, job_key(job_id, "decide"), "decide", args, Decision, exists, compute)
