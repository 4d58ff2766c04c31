"""Invoices and payments of partial and gate jobs.

A job records its invoice: its work amount rounded up to whole sats (``whole_sats_up``: most
wallets refuse msat fractions). A payment is confirmed once per key. Paid in time and at least the
work amount → up to the invoice amount is escrowed, the job proceeds (a partial job reserves its
grant here, re-validating the pool and the daily limits), any excess becomes balance; settlement
refunds what was escrowed beyond the charge (the rounding included), failure refunds all of it.
Paid late, twice, too little, or for a job that takes no payment → all of it becomes the payer's
balance. An expired invoice moves no money.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage import refunds, subsidy
from storage.accounts import (
    ESCROW,
    LIGHTNING_IN,
    POOL,
    TRANSFER_ID,
    Meta,
    TransferReads,
    ask_transfer,
    balance_account,
    transfer,
)
from storage.amounts import whole_sats_up
from storage.errors import IdempotencyConflict, IllegalTransition, InvalidAmount
from storage.jobs import ask_found_job, ask_job, job_from_row, move_job, set_job
from storage.lifecycle import JOB_LIFECYCLE, JobOp, RefundOp
from storage.limits import Limits, utc_day
from storage.operations import ask_once, job_key, once_with
from storage.outcomes import (
    CreditedPayment,
    JobRecord,
    PartialGrant,
    PaymentOutcome,
    PaymentVerdict,
    Serve,
    TopupPayment,
)
from storage.prefetch import Prefetched, invoice_scope, job_scope, payment_scope
from storage.sql import Connection, Cursor, Held


def ask_attach(conn: Connection, job_id: str, payment_hash: str) -> tuple[Cursor, ...]:
    """Ask for what ``attach_invoice`` reads: the job, and whether a job or a top-up holds the
    hash (one round trip on PostgreSQL)."""
    return (ask_job(conn, job_id),
            conn.execute("SELECT 1 FROM jobs WHERE invoice_hash = ?", (payment_hash,)),
            conn.execute("SELECT 1 FROM topups WHERE payment_hash = ?", (payment_hash,)))


def attach_invoice(
    conn: Connection, job_id: str, payment_hash: str, amount: int, expires_at: int, now: int,
    asked: tuple[Cursor, ...] | None = None,
) -> JobRecord:
    """``asked``: its reads, asked for ahead (``ask_attach``)."""
    job_read, hash_in_jobs, hash_in_topups = (
        ask_attach(conn, job_id, payment_hash) if asked is None else asked)
    row, job_has_hash, topup_has_hash = (
        job_read.fetchone(), hash_in_jobs.fetchone(), hash_in_topups.fetchone())
    job = job_from_row(row, job_id)
    if (job.invoice_hash, job.invoice_msat, job.invoice_expires_at) == (
        payment_hash,
        amount,
        expires_at,
    ):
        return job  # a repeat
    JOB_LIFECYCLE.next(job.state, JobOp.ATTACH_INVOICE, job.id)
    if amount != whole_sats_up(job.work_amount_msat):
        raise InvalidAmount(
            f"invoice amount {amount} msat is not the job's work amount {job.work_amount_msat}"
            " msat rounded up to whole sats"
        )
    if job_has_hash:
        raise IdempotencyConflict("payment hash already belongs to another job")
    if topup_has_hash:
        raise IdempotencyConflict("payment hash already belongs to a top-up")
    return set_job(
        conn,
        job,
        now,
        JobOp.ATTACH_INVOICE,
        invoice_hash=payment_hash,
        invoice_msat=amount,
        invoice_expires_at=expires_at,
    )


def prefetched_attach_invoice(job_id: str, payment_hash: str, amount: int, expires_at: int,
                              now: int) -> Prefetched[tuple[Cursor, ...], JobRecord]:
    """``attach_invoice`` as a write whose reads a batch may ask ahead (``storage.prefetch``)."""
    return Prefetched(
        (job_scope(job_id), invoice_scope(payment_hash)),
        lambda conn: ask_attach(conn, job_id, payment_hash),
        lambda conn, asked: attach_invoice(conn, job_id, payment_hash, amount, expires_at, now,
                                           asked),
    )


@dataclass(frozen=True, slots=True)
class ConfirmReads:
    """What ``confirm_payment`` reads first, asked for ahead (``ask_confirm``): its idempotency
    lookup, the job its ``ref`` names, and its two transfers' (they debit the external
    ``lightning_in``: no account to read)."""

    lookup: Cursor
    job: Held
    escrowing: TransferReads
    crediting: TransferReads


def ask_confirm(conn: Connection, ref: str, key: str) -> ConfirmReads:
    """Ask for what ``confirm_payment`` reads first (one round trip on PostgreSQL)."""
    return ConfirmReads(ask_once(conn, key), Held(ask_found_job(conn, ref)),
                        ask_transfer(conn, f"{key}:escrow", LIGHTNING_IN),
                        ask_transfer(conn, f"{key}:balance", LIGHTNING_IN))


def confirm_payment(
    conn: Connection, limits: Limits, ref: str, amount: int, key: str, now: int,
    asked: ConfirmReads | None = None,
) -> PaymentOutcome:
    """The payment's own transfers are asked for with its idempotency lookup and the job (one
    round trip on PostgreSQL, none of its own when ``asked``: ``ask_confirm``); a partial
    job's grant asks its reads in one more (``_reserve_grant``)."""
    reads = ask_confirm(conn, ref, key) if asked is None else asked
    escrowing, crediting = reads.escrowing, reads.crediting

    def compute(row: tuple[object, ...] | None) -> PaymentOutcome:
        job = job_from_row(row, ref, "job or invoice")
        to_balance = balance_account(job.pubkey)

        def all_to_balance(result: PaymentVerdict) -> PaymentOutcome:
            transfer(
                conn,
                f"{key}:balance",
                LIGHTNING_IN,
                to_balance,
                amount,
                Meta(result.value, now, job.id, job.pubkey),
                asked=crediting,
            )
            return PaymentOutcome(job.id, result, amount, False, amount, 0)

        if job.serve not in (Serve.PARTIAL, Serve.GATE):
            return all_to_balance(PaymentVerdict.NOT_DUE)
        if job.paid_msat > 0:
            return all_to_balance(PaymentVerdict.DUPLICATE)
        # never paid: quoted or invoiced (payable), or expired or cancelled (closed unpaid)
        expired = job.invoice_expires_at is not None and now > job.invoice_expires_at
        if expired or not JOB_LIFECYCLE.allows(job.state, JobOp.PAY):
            move_job(conn, job.id, JobOp.EXPIRE, now)
            return all_to_balance(PaymentVerdict.LATE)
        if amount < job.work_amount_msat:
            return all_to_balance(PaymentVerdict.UNDERPAID)
        # up to the invoice (the work amount in whole sats) is escrowed: settlement refunds what
        # the work did not use, the rounding included; above it is balance at once
        escrow = min(amount, whole_sats_up(job.work_amount_msat))
        transfer(
            conn,
            f"{key}:escrow",
            LIGHTNING_IN,
            ESCROW,
            escrow,
            Meta("payment", now, job.id, job.pubkey),
            asked=escrowing,
        )
        excess = amount - escrow
        if excess:
            transfer(
                conn,
                f"{key}:balance",
                LIGHTNING_IN,
                to_balance,
                excess,
                Meta("overpaid", now, job.id, job.pubkey),
                asked=crediting,
            )
        set_job(conn, job, now, JobOp.PAY, paid_msat=escrow)
        if job.serve is Serve.PARTIAL:
            grant = _reserve_grant(conn, limits, job.id, now, job.pubkey)
            if not grant.granted:
                return PaymentOutcome(
                    job.id,
                    PaymentVerdict.TERMS_CHANGED,
                    amount,
                    False,
                    excess + grant.credited_balance_msat,
                    grant.refund_msat,
                )
        result = PaymentVerdict.OVERPAID if excess else PaymentVerdict.PAID
        return PaymentOutcome(job.id, result, amount, True, excess, 0)

    return once_with(conn, key, "confirm_payment", [ref, amount], PaymentOutcome,
                     reads.job, compute, escrowing.held + crediting.held, reads.lookup)


def prefetched_confirm_payment(
    limits: Limits, ref: str, amount: int, key: str, now: int
) -> Prefetched[ConfirmReads, PaymentOutcome]:
    """``confirm_payment`` as a write whose reads a batch may ask ahead (``storage.prefetch``):
    ``ref`` may be a job's id or its invoice's hash, and the job it names is one of its scopes
    (``found``)."""
    return Prefetched(
        (job_scope(ref), invoice_scope(ref), payment_scope(key)),
        lambda conn: ask_confirm(conn, ref, key),
        lambda conn, asked: confirm_payment(conn, limits, ref, amount, key, now, asked),
        lambda asked: tuple(job_scope(str(row[0])) for row in asked.job.load()),
    )


def reserve_partial_grant(
    conn: Connection, limits: Limits, job_id: str, now: int
) -> PartialGrant:
    """Reserve a paid partial job's pool share, or fail it with the whole payment refunded."""
    return _reserve_grant(conn, limits, job_id, now, None)


def _reserve_grant(
    conn: Connection, limits: Limits, job_id: str, now: int, pubkey: str | None
) -> PartialGrant:
    """``reserve_partial_grant``; ``pubkey``: the job's asker, when known (its day's usage, the
    pool and the reservation's transfer are then asked for with the job: one round trip)."""
    day = utc_day(now)
    key = job_key(job_id, "reserve")
    room_reads = None if pubkey is None else subsidy.ask_room(conn, limits, pubkey, day)
    reserving = None if room_reads is None else ask_transfer(conn, key, POOL, room_reads.accounts)

    def compute(row: tuple[object, ...] | None) -> PartialGrant:
        job = job_from_row(row, job_id)
        if job.serve is not Serve.PARTIAL:
            raise IllegalTransition(f"job {job_id} is {job.serve.value}: it has no grant")
        JOB_LIFECYCLE.next(job.state, JobOp.RESERVE_GRANT, job.id)
        asked = room_reads if job.pubkey == pubkey else None
        room, _ = subsidy.room(conn, limits, job.pubkey, day, asked)
        if room >= job.absorb_msat:
            subsidy.reserve(conn, key, job_id, job.pubkey, day, job.absorb_msat, now,
                            reserving if asked is not None else None)
            set_job(
                conn,
                job,
                now,
                JobOp.RESERVE_GRANT,
                reserved_msat=job.absorb_msat,
                reserve_day=day,
            )
            # the reservation's id recorded by its key, not read back
            conn.execute(f"UPDATE jobs SET reserve_transfer = ({TRANSFER_ID}) WHERE id = ?",  # noqa: S608
                         (key, job_id))
            return PartialGrant(job_id, True, job.absorb_msat, 0, 0)
        refund, rest = refunds.owe(conn, job, job.paid_msat, "terms_changed", now)
        set_job(
            conn,
            job,
            now,
            JobOp.FAIL,
            RefundOp.OWE,
            refund_msat=refund,
            error="pool or allowance no longer covers the grant",
        )
        return PartialGrant(job_id, False, job.absorb_msat, refund, rest)

    held = () if room_reads is None or reserving is None else room_reads.held + reserving.held
    return once_with(conn, job_key(job_id, "partial_grant"), "reserve_partial_grant", [],
                     PartialGrant, ask_job(conn, job_id), compute, held)


def expire_job(conn: Connection, job_id: str, now: int) -> JobRecord:
    return move_job(conn, job_id, JobOp.EXPIRE, now)


BALANCE_SUFFIX = ":balance"


def credited_payments(
    conn: Connection, since: int, after_transfer: int = 0
) -> list[CreditedPayment]:
    """Incoming payments (job payments by ``pay:``/``zap:`` key, and top-ups) whose money went,
    all or partly, to a balance at or after ``since`` (and by a transfer whose id is above
    ``after_transfer``), oldest first, each with the outcome its ``confirm_payment`` /
    ``confirm_topup`` stored: what the payer must be told about."""
    rows = conn.execute(
        "SELECT t.id, o.key, t.pubkey, t.created_at, o.op, o.result FROM transfers t"
        " JOIN operations o ON o.key = substr(t.key, 1, length(t.key) - ?)"
        " WHERE t.id > ? AND t.created_at >= ? AND t.debit_account = ? AND t.key LIKE ?"
        " AND o.op IN ('confirm_payment', 'confirm_topup') ORDER BY t.id",
        (len(BALANCE_SUFFIX), after_transfer, since, LIGHTNING_IN, f"%{BALANCE_SUFFIX}"),
    ).fetchall()
    out: list[CreditedPayment] = []
    for tid, key, pubkey, created_at, op, result in rows:
        outcome: PaymentOutcome | TopupPayment = (
            PaymentOutcome.from_json(result) if op == "confirm_payment"
            else TopupPayment.from_json(result)
        )
        out.append(CreditedPayment(int(tid), str(key), str(pubkey), int(created_at),
                                   outcome))
    return out
