"""Refunds and their payouts, along the refund and payout lifecycles (``storage.lifecycle``):
refunds ``none → pending → paying → paid``, or ``pending → credited``.

A payout is recorded (with a pending refunds → payouts transfer) *before* it is sent; confirming
posts it with the payout's reference (preimage), failing voids it and makes the refund claimable
again. A refund can therefore be claimed by one payout at a time, and paid at most once.

What a job owes back out of escrow (``owe``) is a pending refund of whole sats — what a bolt11 or
a lightning address can receive — and its sub-sat rest becomes the asker's balance at once.

A payout may send less than the refund (``amount``: e.g. the whole sats of a refund that a
lightning address cannot receive to the msat); confirming it then moves the remainder to the
asker's balance in the same transaction, so the refund ends ``paid`` and nothing is lost.
"""

from __future__ import annotations

from storage.accounts import (
    ESCROW,
    FEES,
    OPERATOR,
    PAYOUTS,
    REFUNDS,
    TRANSFER_ID,
    Meta,
    balance_account,
    resolve,
    transfer,
)
from storage.errors import IdempotencyConflict, InvalidAmount, UnknownPayout
from storage.jobs import get_job, set_job
from storage.lifecycle import (
    PAYOUT_LIFECYCLE,
    REFUND_LIFECYCLE,
    PayoutOp,
    PayoutState,
    RefundOp,
    RefundState,
)
from storage.outcomes import JobRecord, Payout, Refund
from storage.sql import Connection

_PAYOUT_COLUMNS = (
    "id, job_id, pubkey, amount_msat, destination, state, preimage, fee_msat, reason, transfer_id,"
    " (SELECT j.refund_msat FROM jobs j WHERE j.id = payouts.job_id) - amount_msat"
)


def _payout(row: tuple[object, ...]) -> Payout:
    v = list(row)
    return Payout(
        int(str(v[0])),
        str(v[1]),
        str(v[2]),
        int(str(v[3])),
        str(v[4]),
        PayoutState(str(v[5])),
        None if v[6] is None else str(v[6]),
        None if v[7] is None else int(str(v[7])),
        None if v[8] is None else str(v[8]),
        int(str(v[10])),
    )


def _get(conn: Connection, payout_id: int) -> tuple[Payout, int]:
    row = conn.execute(
        f"SELECT {_PAYOUT_COLUMNS} FROM payouts WHERE id = ?",  # noqa: S608
        (payout_id,),
    ).fetchone()
    if row is None:
        raise UnknownPayout(f"no payout {payout_id}")
    return _payout(row), int(row[9])


def list_payouts(conn: Connection, state: PayoutState) -> list[Payout]:
    rows = conn.execute(
        f"SELECT {_PAYOUT_COLUMNS} FROM payouts WHERE state = ? ORDER BY id",  # noqa: S608
        (state.value,),
    ).fetchall()
    return [_payout(r) for r in rows]


def pending_refunds(conn: Connection, pubkey: str) -> list[Refund]:
    rows = conn.execute(
        "SELECT id, pubkey, refund_msat, refund_state FROM jobs"
        " WHERE pubkey = ? AND refund_state IN ('pending', 'paying') ORDER BY created_at, rowid",
        (pubkey,),
    ).fetchall()
    return [Refund(r[0], r[1], r[2], RefundState(r[3])) for r in rows]


def owe(
    conn: Connection, job: JobRecord, owed: int, code: str, now: int
) -> tuple[int, int]:
    """Give ``owed`` msat of ``job``'s escrow back: its whole sats as a pending refund, the rest
    as balance. Returns ``(refund, to_balance)``; the caller records the refund on the job
    (``RefundOp.OWE`` when it is not 0)."""
    refund = owed - owed % 1000
    rest = owed - refund
    meta = Meta(code, now, job.id, job.pubkey)
    if refund:
        transfer(conn, f"job:{job.id}:refund", ESCROW, REFUNDS, refund, meta)
    if rest:
        transfer(conn, f"job:{job.id}:remainder", ESCROW, balance_account(job.pubkey), rest, meta)
    return refund, rest


def begin_payout(
    conn: Connection,
    job_id: str,
    destination: str,
    key: str,
    now: int,
    amount: int | None = None,
) -> Payout:
    row = conn.execute(
        f"SELECT {_PAYOUT_COLUMNS} FROM payouts WHERE key = ?",  # noqa: S608
        (key,),
    ).fetchone()
    if row is not None:
        existing = _payout(row)
        if (
            existing.job_id != job_id
            or existing.destination != destination
            or (amount is not None and existing.amount_msat != amount)
        ):
            raise IdempotencyConflict(f"payout key {key!r} already used for other terms")
        return existing
    job = get_job(conn, job_id)
    REFUND_LIFECYCLE.next(job.refund_state, RefundOp.BEGIN_PAYOUT, job.id)
    send = job.refund_msat if amount is None else amount
    if send > job.refund_msat:
        raise InvalidAmount(f"payout of {send} msat exceeds the refund of {job.refund_msat}")
    n = conn.execute("SELECT COUNT(*) FROM payouts WHERE job_id = ?", (job_id,)).fetchone()[0]
    transfer_key = f"job:{job_id}:payout:{n}"
    transfer(
        conn,
        transfer_key,
        REFUNDS,
        PAYOUTS,
        send,
        Meta("payout", now, job_id, job.pubkey),
        pending=True,
    )
    payout_id = int(conn.execute(
        "INSERT INTO payouts (key, job_id, pubkey, amount_msat, destination, state,"  # noqa: S608
        f" transfer_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ({TRANSFER_ID}), ?, ?)"
        " RETURNING id",
        (key, job_id, job.pubkey, send, destination, PayoutState.SENDING.value, transfer_key,
         now, now),
    ).fetchone()[0])
    set_job(conn, job, now, refund_op=RefundOp.BEGIN_PAYOUT)
    return _get(conn, payout_id)[0]


def confirm_payout(
    conn: Connection, payout_id: int, preimage: str, fee: int, now: int
) -> Payout:
    payout, tid = _get(conn, payout_id)
    state = PAYOUT_LIFECYCLE.next(payout.state, PayoutOp.CONFIRM, str(payout_id))
    if state is payout.state:  # a repeat
        if payout.preimage == preimage and payout.fee_msat == fee:
            return payout
        raise IdempotencyConflict(f"payout {payout_id} was already confirmed with other terms")
    job = get_job(conn, payout.job_id)
    REFUND_LIFECYCLE.next(job.refund_state, RefundOp.CONFIRM_PAYOUT, job.id)
    meta = Meta("payout", now, payout.job_id, payout.pubkey)
    resolve(conn, f"payout:{payout_id}:post", tid, payout.amount_msat, meta)
    if fee:
        transfer(conn, f"payout:{payout_id}:fee", OPERATOR, FEES, fee, meta)
    if payout.remainder_msat:
        transfer(
            conn,
            f"payout:{payout_id}:remainder",
            REFUNDS,
            balance_account(payout.pubkey),
            payout.remainder_msat,
            Meta("refund_remainder", now, payout.job_id, payout.pubkey),
        )
    conn.execute(
        "UPDATE payouts SET state = ?, preimage = ?, fee_msat = ?, updated_at = ? WHERE id = ?",
        (state.value, preimage, fee, now, payout_id),
    )
    set_job(conn, job, now, refund_op=RefundOp.CONFIRM_PAYOUT, refund_ref=preimage)
    return _get(conn, payout_id)[0]


def fail_payout(conn: Connection, payout_id: int, reason: str, now: int) -> Payout:
    payout, tid = _get(conn, payout_id)
    state = PAYOUT_LIFECYCLE.next(payout.state, PayoutOp.FAIL, str(payout_id))
    if state is payout.state:  # a repeat
        return payout
    job = get_job(conn, payout.job_id)
    REFUND_LIFECYCLE.next(job.refund_state, RefundOp.FAIL_PAYOUT, job.id)
    resolve(
        conn,
        f"payout:{payout_id}:void",
        tid,
        0,
        Meta("payout_failed", now, payout.job_id, payout.pubkey),
    )
    conn.execute(
        "UPDATE payouts SET state = ?, reason = ?, updated_at = ? WHERE id = ?",
        (state.value, reason, now, payout_id),
    )
    set_job(conn, job, now, refund_op=RefundOp.FAIL_PAYOUT)
    return _get(conn, payout_id)[0]


def credit_refund(conn: Connection, job_id: str, now: int) -> Refund:
    job = get_job(conn, job_id)
    state = REFUND_LIFECYCLE.next(job.refund_state, RefundOp.CREDIT, job.id)
    if state is job.refund_state:  # a repeat
        return Refund(job_id, job.pubkey, job.refund_msat, state)
    transfer(
        conn,
        f"job:{job_id}:refund:credit",
        REFUNDS,
        balance_account(job.pubkey),
        job.refund_msat,
        Meta("refund_credited", now, job_id, job.pubkey),
    )
    set_job(conn, job, now, refund_op=RefundOp.CREDIT)
    return Refund(job_id, job.pubkey, job.refund_msat, state)
