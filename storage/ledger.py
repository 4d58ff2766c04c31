"""The ledger: the seed's money operations as an async API over ``Database``.

Each public method validates its arguments (``InvalidInput`` before anything is queued), then runs
one synchronous function inside the writer's transaction (see ``storage.database``): it either
fully happens or not at all. Every operation has an idempotency key — given by the caller
(``credit_pool``, ``credit_balance``, ``confirm_payment``, ``begin_payout``) or derived from the job
id and the step (``job:<id>:<step>``); a repeat of a key returns the stored original result and
moves nothing. Reusing a key for different arguments raises ``IdempotencyConflict``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from storage import subsidy
from storage.accounts import (
    ESCROW,
    LIGHTNING_IN,
    OPERATOR,
    POOL,
    REFUNDS,
    REVENUE,
    SUBSIDY,
    ZAPS_IN,
    Meta,
    available,
    balance_account,
    get_account,
    resolve,
    transfer,
)
from storage.amounts import positive_msat, text_id
from storage.database import Database
from storage.errors import (
    IdempotencyConflict,
    IllegalTransition,
    InvalidAmount,
    InvalidInput,
)
from storage.jobs import (
    JOB_MOVES,
    find_job,
    get_job,
    jobs_in_state,
    overdue_invoices,
    recent_jobs,
    set_job,
)
from storage.limits import Clock, Limits, system_clock, utc_day
from storage.outcomes import (
    Allowance,
    BalanceView,
    Credit,
    Decision,
    Failure,
    GrantOutcome,
    JobRecord,
    PartialGrant,
    PaymentOutcome,
    PaymentResult,
    Payout,
    PoolStatus,
    Reason,
    Refund,
    RefundState,
    Serve,
    SessionHold,
    SessionSettlement,
    Settlement,
    _Value,
)
from storage.refunds import (
    begin_payout_sync,
    confirm_payout_sync,
    credit_refund_sync,
    fail_payout_sync,
    list_payouts,
    pending_refunds_sync,
)

V = TypeVar("V", bound=_Value)

POOL_SOURCES = {"zap": ZAPS_IN, "operator": OPERATOR}


def once(
    conn: sqlite3.Connection,
    key: str,
    op: str,
    args: object,
    cls: type[V],
    compute: Callable[[], V],
) -> V:
    """Run ``compute`` once per ``key``; a repeat returns the stored result."""
    args_text = json.dumps(args, separators=(",", ":"))
    row = conn.execute("SELECT op, args, result FROM operations WHERE key = ?", (key,)).fetchone()
    if row is not None:
        if row[0] != op or row[1] != args_text:
            raise IdempotencyConflict(
                f"key {key!r} was already used for {row[0]} with other arguments"
            )
        return cls.from_json(row[2])
    result = compute()
    conn.execute(
        "INSERT INTO operations (key, op, args, result) VALUES (?, ?, ?, ?)",
        (key, op, args_text, result.to_json()),
    )
    return result


def _decide(
    conn: sqlite3.Connection, limits: Limits, job_id: str, pubkey: str, estimate: int, day: str
) -> Decision:
    room, reason = subsidy.room(conn, limits, pubkey, day)
    if room >= estimate:
        return Decision(job_id, pubkey, Serve.FREE, Reason.COVERED, estimate, estimate, 0)
    if room > 0:
        return Decision(job_id, pubkey, Serve.PARTIAL, reason, estimate, room, estimate - room)
    return Decision(job_id, pubkey, Serve.GATE, reason, estimate, 0, estimate)


def _job_key(job_id: str, step: str) -> str:
    return f"job:{job_id}:{step}"


class Ledger:
    """The money operations of the agent. ``Ledger(db, limits, clock=...)``."""

    def __init__(self, db: Database, limits: Limits, clock: Clock = system_clock) -> None:
        if not isinstance(limits, Limits):
            raise InvalidInput("limits must be a Limits")
        self.db = db
        self.limits = limits
        self.clock = clock

    # ------------------------------------------------------------------ funding

    async def credit_pool(
        self, amount_msat: int, key: str, *, source: str = "zap", zapper_pubkey: str | None = None
    ) -> Credit:
        """Fund the pool (a zap, ``source="zap"``, or an operator top-up). Idempotent by key."""
        amount = positive_msat(amount_msat)
        text_id(key, "key")
        if source not in POOL_SOURCES:
            raise InvalidInput(f"source must be one of {sorted(POOL_SOURCES)}")
        if zapper_pubkey is not None:
            text_id(zapper_pubkey, "zapper_pubkey")
        now = self.clock()

        def run(conn: sqlite3.Connection) -> Credit:
            def compute() -> Credit:
                transfer(
                    conn,
                    key,
                    POOL_SOURCES[source],
                    POOL,
                    amount,
                    Meta(source, now, None, zapper_pubkey, utc_day(now)),
                )
                return Credit(key, POOL, amount)

            return once(conn, key, "credit_pool", [amount, source, zapper_pubkey], Credit, compute)

        return await self.db.write(run)

    async def credit_balance(
        self, pubkey: str, amount_msat: int, key: str, reason: str = "payment"
    ) -> Credit:
        """Money received for ``pubkey`` (top-up, late/over/double payment) becomes balance."""
        text_id(pubkey, "pubkey")
        amount = positive_msat(amount_msat)
        text_id(key, "key")
        text_id(reason, "reason", 64)
        now = self.clock()
        account = balance_account(pubkey)

        def run(conn: sqlite3.Connection) -> Credit:
            def compute() -> Credit:
                transfer(conn, key, LIGHTNING_IN, account, amount, Meta(reason, now, None, pubkey))
                return Credit(key, account, amount)

            return once(conn, key, "credit_balance", [pubkey, amount, reason], Credit, compute)

        return await self.db.write(run)

    # ------------------------------------------------------------------ decisions

    async def decide(self, job_id: str, pubkey: str, estimate_msat: int) -> Decision:
        """Decide free / partial / gate for a new job, recording the job.

        free: the pool is reserved in this same transaction (state ``running``).
        partial / gate: nothing is debited (state ``quoted``; attach an invoice next).
        """
        text_id(job_id, "job_id")
        text_id(pubkey, "pubkey")
        estimate = positive_msat(estimate_msat, "estimate_msat")
        now = self.clock()
        day = utc_day(now)
        limits = self.limits

        def run(conn: sqlite3.Connection) -> Decision:
            def compute() -> Decision:
                if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone():
                    raise IdempotencyConflict(f"job {job_id} already exists")
                d = _decide(conn, limits, job_id, pubkey, estimate, day)
                free = d.serve is Serve.FREE
                tid = None
                if free:  # the reservation, in the decision's own transaction
                    tid = subsidy.reserve(
                        conn, _job_key(job_id, "reserve"), job_id, pubkey, day, estimate, now
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

            return once(
                conn, _job_key(job_id, "decide"), "decide", [pubkey, estimate], Decision, compute
            )

        return await self.db.write(run)

    async def decide_dry_run(self, pubkey: str, estimate_msat: int) -> Decision:
        """The decision ``decide`` would take now; reads only, writes nothing (``job_id=""``)."""
        text_id(pubkey, "pubkey")
        estimate = positive_msat(estimate_msat, "estimate_msat")
        day = utc_day(self.clock())
        limits = self.limits
        return await self.db.read(lambda conn: _decide(conn, limits, "", pubkey, estimate, day))

    # ------------------------------------------------------------------ invoices and payment

    async def attach_invoice(
        self, job_id: str, payment_hash: str, amount_msat: int, expires_at: int
    ) -> JobRecord:
        """Record the invoice of a partial or gate job (amount = its work amount)."""
        text_id(job_id, "job_id")
        text_id(payment_hash, "payment_hash")
        amount = positive_msat(amount_msat)
        if type(expires_at) is not int or expires_at <= 0:
            raise InvalidInput("expires_at must be a positive int of epoch seconds")
        now = self.clock()

        def run(conn: sqlite3.Connection) -> JobRecord:
            job = get_job(conn, job_id)
            if job.invoice_hash is not None:
                if (job.invoice_hash, job.invoice_msat, job.invoice_expires_at) == (
                    payment_hash,
                    amount,
                    expires_at,
                ):
                    return job
                raise IllegalTransition(f"job {job_id} already has an invoice")
            if job.serve not in ("partial", "gate"):
                raise IllegalTransition(f"job {job_id} is {job.serve}: it takes no invoice")
            if amount != job.work_amount_msat:
                raise InvalidAmount(
                    f"invoice amount {amount} differs from the job's work amount"
                    f" {job.work_amount_msat}"
                )
            if conn.execute(
                "SELECT 1 FROM jobs WHERE invoice_hash = ?", (payment_hash,)
            ).fetchone():
                raise IdempotencyConflict("payment hash already belongs to another job")
            set_job(
                conn,
                job,
                now,
                state="invoiced",
                invoice_hash=payment_hash,
                invoice_msat=amount,
                invoice_expires_at=expires_at,
            )
            return get_job(conn, job_id)

        return await self.db.write(run)

    async def confirm_payment(self, ref: str, amount_msat: int, key: str) -> PaymentOutcome:
        """A payment of ``amount_msat`` for the job with id or invoice payment hash ``ref``.

        Idempotent by ``key`` (e.g. ``pay:<payment_hash>`` or ``zap:<payment_hash>``). Paid in
        time and at least the invoice → the job proceeds (partial jobs reserve their grant here;
        if it is no longer covered the job fails with the whole payment as a pending refund), any
        excess becomes balance. Paid late, twice, too little, or for a job that needs no
        payment → all of it becomes the payer's balance.
        """
        text_id(ref, "ref")
        amount = positive_msat(amount_msat)
        text_id(key, "key")
        now = self.clock()
        limits = self.limits

        def run(conn: sqlite3.Connection) -> PaymentOutcome:
            def compute() -> PaymentOutcome:
                job = find_job(conn, ref)
                to_balance = balance_account(job.pubkey)

                def all_to_balance(result: PaymentResult) -> PaymentOutcome:
                    transfer(
                        conn,
                        f"{key}:balance",
                        LIGHTNING_IN,
                        to_balance,
                        amount,
                        Meta(result.value, now, job.id, job.pubkey),
                    )
                    return PaymentOutcome(job.id, result, amount, False, amount, 0)

                if job.serve not in ("partial", "gate"):
                    return all_to_balance(PaymentResult.NOT_DUE)
                if job.paid_msat > 0:
                    return all_to_balance(PaymentResult.DUPLICATE)
                expired = job.state in ("expired", "failed", "done") or (
                    job.invoice_expires_at is not None and now > job.invoice_expires_at
                )
                if expired:
                    if job.state in ("quoted", "invoiced"):
                        set_job(conn, job, now, state="expired")
                    return all_to_balance(PaymentResult.LATE)
                due = job.work_amount_msat
                if amount < due:
                    return all_to_balance(PaymentResult.UNDERPAID)
                transfer(
                    conn,
                    f"{key}:escrow",
                    LIGHTNING_IN,
                    ESCROW,
                    due,
                    Meta("payment", now, job.id, job.pubkey),
                )
                excess = amount - due
                if excess:
                    transfer(
                        conn,
                        f"{key}:balance",
                        LIGHTNING_IN,
                        to_balance,
                        excess,
                        Meta("overpaid", now, job.id, job.pubkey),
                    )
                set_job(conn, job, now, state="paid", paid_msat=due)
                result = PaymentResult.OVERPAID if excess else PaymentResult.PAID
                if job.serve == "partial":
                    grant = _reserve_partial(conn, limits, job.id, now)
                    if not grant.granted:
                        return PaymentOutcome(
                            job.id,
                            PaymentResult.TERMS_CHANGED,
                            amount,
                            False,
                            excess,
                            grant.refund_msat,
                        )
                return PaymentOutcome(job.id, result, amount, True, excess, 0)

            return once(conn, key, "confirm_payment", [ref, amount], PaymentOutcome, compute)

        return await self.db.write(run)

    async def reserve_partial_grant(self, job_id: str) -> PartialGrant:
        """Reserve a paid partial job's grant (re-validating pool and daily limits), once.

        ``confirm_payment`` calls this for you; calling it again returns the same result.
        """
        text_id(job_id, "job_id")
        now = self.clock()
        limits = self.limits
        return await self.db.write(lambda conn: _reserve_partial(conn, limits, job_id, now))

    async def expire_job(self, job_id: str) -> JobRecord:
        """An unpaid job whose invoice expired: it moves no money. Repeats are no-ops."""
        text_id(job_id, "job_id")
        now = self.clock()

        def run(conn: sqlite3.Connection) -> JobRecord:
            job = get_job(conn, job_id)
            if job.state != "expired":
                set_job(conn, job, now, state="expired")
            return get_job(conn, job_id)

        return await self.db.write(run)

    # ------------------------------------------------------------------ work outcome

    async def record_grant(
        self, pubkey: str, job_id: str, actual_absorbed_msat: int, reserved_absorbed_msat: int
    ) -> GrantOutcome:
        """A free job's work is done: keep ``actual`` of the reservation, return the rest."""
        text_id(pubkey, "pubkey")
        text_id(job_id, "job_id")
        actual = _nonneg(actual_absorbed_msat, "actual_absorbed_msat")
        reserved = positive_msat(reserved_absorbed_msat, "reserved_absorbed_msat")
        if actual > reserved:
            raise InvalidAmount(f"actual absorbed {actual} exceeds the reservation {reserved}")
        now = self.clock()

        def run(conn: sqlite3.Connection) -> GrantOutcome:
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
                        f"reserved_absorbed {reserved} differs from the job's reservation "
                        f"{job.reserved_msat}"
                    )
                return _grant(conn, job, actual, now)

            return once(
                conn,
                _job_key(job_id, "grant"),
                "record_grant",
                [pubkey, actual, reserved],
                GrantOutcome,
                compute,
            )

        return await self.db.write(run)

    async def settle(self, job_id: str, actual_msat: int) -> Settlement:
        """Work done with real cost ``actual_msat`` (<= estimate): the seed's settlement math.

        free: ``record_grant(actual, reserved)``. partial: the user pays
        ``max(0, actual - absorb)``, the pool keeps ``min(actual, absorb)``, the rest of the paid
        work amount is a pending refund. gate: refund ``work_amount - actual``.
        """
        text_id(job_id, "job_id")
        actual = _nonneg(actual_msat, "actual_msat")
        now = self.clock()

        def run(conn: sqlite3.Connection) -> Settlement:
            def compute() -> Settlement:
                job = get_job(conn, job_id)
                if actual > job.estimate_msat:
                    raise InvalidAmount(
                        f"actual cost {actual} exceeds the estimate {job.estimate_msat}"
                    )
                if job.serve == "free" and job.state == "running":
                    g = _grant(conn, job, actual, now)
                    return Settlement(job_id, actual, 0, g.absorbed_msat, 0)
                if job.serve not in ("partial", "gate") or job.state != "paid":
                    raise IllegalTransition(
                        f"job {job_id} ({job.serve}) is {job.state}: nothing to settle"
                    )
                keep = min(actual, job.absorb_msat) if job.serve == "partial" else 0
                if job.serve == "partial":
                    assert job.reserve_transfer is not None
                    subsidy.settle(
                        conn,
                        _job_key(job_id, "reserve:settle"),
                        job_id,
                        job.pubkey,
                        str(job.reserve_day),
                        job.reserve_transfer,
                        job.reserved_msat,
                        keep,
                        now,
                    )
                charge = max(0, actual - job.absorb_msat) if job.serve == "partial" else actual
                refund = job.paid_msat - charge
                meta = Meta("settle", now, job_id, job.pubkey)
                if charge:
                    transfer(conn, _job_key(job_id, "revenue"), ESCROW, REVENUE, charge, meta)
                changes: dict[str, object] = {}
                if refund:
                    transfer(conn, _job_key(job_id, "refund"), ESCROW, REFUNDS, refund, meta)
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

            return once(conn, _job_key(job_id, "settle"), "settle", [actual], Settlement, compute)

        return await self.db.write(run)

    async def release_reservation(self, job_id: str) -> Failure:
        """A free job's work failed: the whole reservation back to the pool, counters restored."""
        return await self.fail_job(job_id, "work failed")

    async def fail_job(self, job_id: str, reason: str = "work failed") -> Failure:
        """The work failed (or will not run): release everything, refund whatever was paid."""
        text_id(job_id, "job_id")
        text_id(reason, "reason", 200)
        now = self.clock()

        def run(conn: sqlite3.Connection) -> Failure:
            def compute() -> Failure:
                job = get_job(conn, job_id)
                if job.state not in ("running", "paid", "quoted", "invoiced"):
                    raise IllegalTransition(f"job {job_id} is {job.state}: it cannot fail now")
                released = 0
                if job.reserve_transfer is not None:
                    released += subsidy.settle(
                        conn,
                        _job_key(job_id, "reserve:settle"),
                        job_id,
                        job.pubkey,
                        str(job.reserve_day),
                        job.reserve_transfer,
                        job.reserved_msat,
                        0,
                        now,
                    )
                if job.hold_transfer is not None:
                    resolve(
                        conn,
                        _job_key(job_id, "hold:settle"),
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
                        _job_key(job_id, "refund"),
                        ESCROW,
                        REFUNDS,
                        refund,
                        Meta("failed", now, job_id, job.pubkey),
                    )
                    changes = {"refund_state": "pending", "refund_msat": refund}
                set_job(conn, job, now, state="failed", error=reason, **changes)
                return Failure(job_id, released, refund)

            return once(conn, _job_key(job_id, "fail"), "fail_job", [], Failure, compute)

        return await self.db.write(run)

    # ------------------------------------------------------------------ sessions

    async def session_start(self, job_id: str, pubkey: str, estimate_msat: int) -> SessionHold:
        """Serve at once from prepaid balance: hold the estimate (nothing written if short)."""
        text_id(job_id, "job_id")
        text_id(pubkey, "pubkey")
        estimate = positive_msat(estimate_msat, "estimate_msat")
        now = self.clock()
        day = utc_day(now)
        limits = self.limits
        account = balance_account(pubkey)

        def run(conn: sqlite3.Connection) -> SessionHold:
            key = _job_key(job_id, "session")
            args = [pubkey, estimate]
            have = available(conn, account)
            repeat = conn.execute("SELECT 1 FROM operations WHERE key = ?", (key,)).fetchone()
            if repeat is None and have < estimate:
                return SessionHold(job_id, False, 0, 0, have)

            def compute() -> SessionHold:
                if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone():
                    raise IdempotencyConflict(f"job {job_id} already exists")
                room, _ = subsidy.room(conn, limits, pubkey, day)
                advisory = min(room, estimate)
                tid = transfer(
                    conn,
                    _job_key(job_id, "hold"),
                    account,
                    REVENUE,
                    estimate,
                    Meta("session", now, job_id, pubkey),
                    pending=True,
                )
                conn.execute(
                    "INSERT INTO jobs (id, pubkey, serve, state, estimate_msat, absorb_msat,"
                    " work_amount_msat, hold_transfer, created_at, updated_at)"
                    " VALUES (?, ?, 'session', 'running', ?, ?, ?, ?, ?, ?)",
                    (job_id, pubkey, estimate, advisory, estimate - advisory, tid, now, now),
                )
                return SessionHold(job_id, True, estimate, advisory, have - estimate)

            return once(conn, key, "session_start", args, SessionHold, compute)

        return await self.db.write(run)

    async def session_settle(self, job_id: str, actual_msat: int) -> SessionSettlement:
        """Charge ``actual - subsidy``; subsidy: ``min(actual, advisory)`` if covered, else 0."""
        text_id(job_id, "job_id")
        actual = _nonneg(actual_msat, "actual_msat")
        now = self.clock()
        day = utc_day(now)
        limits = self.limits

        def run(conn: sqlite3.Connection) -> SessionSettlement:
            def compute() -> SessionSettlement:
                job = get_job(conn, job_id)
                if job.serve != "session" or job.state != "running":
                    raise IllegalTransition(f"job {job_id} ({job.serve}) is {job.state}")
                if actual > job.estimate_msat:
                    raise InvalidAmount(
                        f"actual cost {actual} exceeds the estimate {job.estimate_msat}"
                    )
                target = min(actual, job.absorb_msat)
                absorbed = 0
                if target > 0 and subsidy.room(conn, limits, job.pubkey, day)[0] >= target:
                    subsidy.spend(
                        conn, _job_key(job_id, "subsidy"), job_id, job.pubkey, day, target, now
                    )
                    absorbed = target
                charged = actual - absorbed
                assert job.hold_transfer is not None
                resolve(
                    conn,
                    _job_key(job_id, "hold:settle"),
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
                return SessionSettlement(
                    job_id, actual, absorbed, charged, job.estimate_msat - charged
                )

            return once(
                conn,
                _job_key(job_id, "settle"),
                "session_settle",
                [actual],
                SessionSettlement,
                compute,
            )

        return await self.db.write(run)

    async def session_fail(self, job_id: str, reason: str = "work failed") -> Failure:
        """The session's work failed: the whole hold is released."""
        return await self.fail_job(job_id, reason)

    # ------------------------------------------------------------------ refunds and payouts

    async def credit_refund_to_balance(self, job_id: str) -> Refund:
        """Keep a pending refund as balance instead of a payout (once)."""
        text_id(job_id, "job_id")
        now = self.clock()
        return await self.db.write(lambda conn: credit_refund_sync(conn, job_id, now))

    async def begin_payout(self, job_id: str, destination: str, key: str) -> Payout:
        """Record a refund payout BEFORE sending it; the refund becomes ``paying``."""
        text_id(job_id, "job_id")
        text_id(destination, "destination", 4096)
        text_id(key, "key")
        now = self.clock()
        return await self.db.write(
            lambda conn: begin_payout_sync(conn, job_id, destination, key, now)
        )

    async def confirm_payout(self, payout_id: int, preimage: str, fee_msat: int = 0) -> Payout:
        """The payout was paid: the refund is ``paid`` with the preimage as its reference."""
        _payout_id(payout_id)
        text_id(preimage, "preimage")
        fee = _nonneg(fee_msat, "fee_msat")
        now = self.clock()
        return await self.db.write(
            lambda conn: confirm_payout_sync(conn, payout_id, preimage, fee, now)
        )

    async def fail_payout(self, payout_id: int, reason: str) -> Payout:
        """The payout failed for sure: the refund is ``pending`` (claimable) again."""
        _payout_id(payout_id)
        text_id(reason, "reason", 200)
        now = self.clock()
        return await self.db.write(lambda conn: fail_payout_sync(conn, payout_id, reason, now))

    async def unfinished_payouts(self) -> list[Payout]:
        """Payouts recorded but neither confirmed nor failed (check them after a restart)."""
        return await self.db.read(lambda conn: list_payouts(conn, "sending"))

    async def pending_refunds(self, pubkey: str) -> list[Refund]:
        text_id(pubkey, "pubkey")
        return await self.db.read(lambda conn: pending_refunds_sync(conn, pubkey))

    # ------------------------------------------------------------------ reads

    async def job(self, job_id: str) -> JobRecord:
        text_id(job_id, "job_id")
        return await self.db.read(lambda conn: get_job(conn, job_id))

    async def jobs_in_state(self, *states: str) -> list[JobRecord]:
        """Every job in one of ``states`` (after a restart: ``running`` and ``paid`` jobs whose
        work was interrupted must be re-run or failed)."""
        bad = [s for s in states if s not in JOB_MOVES]
        if bad or not states:
            raise InvalidInput(f"states must be among {sorted(JOB_MOVES)}")
        return await self.db.read(lambda conn: jobs_in_state(conn, states))

    async def overdue_invoices(self) -> list[JobRecord]:
        """Unpaid jobs whose invoice has expired by now (pass each to ``expire_job``)."""
        now = self.clock()
        return await self.db.read(lambda conn: overdue_invoices(conn, now))

    async def recent_jobs(self, pubkey: str, limit: int = 10) -> list[JobRecord]:
        text_id(pubkey, "pubkey")
        if type(limit) is not int or not 0 < limit <= 1000:
            raise InvalidInput("limit must be an int in 1..1000")
        return await self.db.read(lambda conn: recent_jobs(conn, pubkey, limit))

    async def balance(self, pubkey: str) -> BalanceView:
        text_id(pubkey, "pubkey")

        def run(conn: sqlite3.Connection) -> BalanceView:
            acc = get_account(conn, balance_account(pubkey))
            refunds = sum(r.amount_msat for r in pending_refunds_sync(conn, pubkey))
            return BalanceView(pubkey, acc.available_msat, acc.debits_pending, refunds)

        return await self.db.read(run)

    async def allowance(self, pubkey: str) -> Allowance:
        """What is left of ``pubkey``'s free allowance today."""
        text_id(pubkey, "pubkey")
        day = utc_day(self.clock())
        limits = self.limits

        def run(conn: sqlite3.Connection) -> Allowance:
            absorbed, jobs = subsidy.usage(conn, pubkey, day)
            return Allowance(
                pubkey,
                day,
                max(0, limits.daily_free_msat - absorbed),
                max(0, limits.daily_free_jobs - jobs),
            )

        return await self.db.read(run)

    async def pool_status(self) -> PoolStatus:
        day = utc_day(self.clock())
        cap = self.limits.pool_daily_cap_msat

        def run(conn: sqlite3.Connection) -> PoolStatus:
            pool = get_account(conn, POOL)
            zaps, zappers = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT pubkey) FROM transfers"
                " WHERE credit_account = 'pool' AND code = 'zap'"
            ).fetchone()
            return PoolStatus(
                pool.available_msat,
                pool.debits_pending,
                subsidy.pool_spent(conn, day),
                cap,
                pool.credits_posted,
                get_account(conn, SUBSIDY).credits_posted,
                zaps,
                zappers,
            )

        return await self.db.read(run)


def _nonneg(value: object, name: str) -> int:
    if type(value) is not int or value < 0:
        raise InvalidAmount(f"{name} must be a non-negative int number of msat")
    return positive_msat(value, name) if value else 0


def _payout_id(value: object) -> int:
    if type(value) is not int or value <= 0:
        raise InvalidInput("payout_id must be a positive int")
    return value


def _grant(conn: sqlite3.Connection, job: JobRecord, actual: int, now: int) -> GrantOutcome:
    assert job.reserve_transfer is not None
    returned = subsidy.settle(
        conn,
        _job_key(job.id, "reserve:settle"),
        job.id,
        job.pubkey,
        str(job.reserve_day),
        job.reserve_transfer,
        job.reserved_msat,
        actual,
        now,
    )
    set_job(conn, job, now, state="done", actual_msat=actual, absorbed_msat=actual, charged_msat=0)
    return GrantOutcome(job.id, actual, returned)


def _reserve_partial(
    conn: sqlite3.Connection, limits: Limits, job_id: str, now: int
) -> PartialGrant:
    def compute() -> PartialGrant:
        job = get_job(conn, job_id)
        if job.serve != "partial" or job.state != "paid" or job.reserve_transfer is not None:
            raise IllegalTransition(
                f"job {job_id} ({job.serve}, {job.state}) has no grant to reserve"
            )
        day = utc_day(now)
        room, _ = subsidy.room(conn, limits, job.pubkey, day)
        if room >= job.absorb_msat:
            tid = subsidy.reserve(
                conn, _job_key(job_id, "reserve"), job_id, job.pubkey, day, job.absorb_msat, now
            )
            set_job(
                conn, job, now, reserved_msat=job.absorb_msat, reserve_transfer=tid, reserve_day=day
            )
            return PartialGrant(job_id, True, job.absorb_msat, 0)
        refund = job.paid_msat
        transfer(
            conn,
            _job_key(job_id, "refund"),
            ESCROW,
            REFUNDS,
            refund,
            Meta("terms_changed", now, job_id, job.pubkey),
        )
        set_job(
            conn,
            job,
            now,
            state="failed",
            refund_state=RefundState.PENDING.value,
            refund_msat=refund,
            error="pool or allowance no longer covers the grant",
        )
        return PartialGrant(job_id, False, job.absorb_msat, refund)

    return once(
        conn, _job_key(job_id, "partial_grant"), "reserve_partial_grant", [], PartialGrant, compute
    )
