"""The ledger: the seed's money operations as one async API over ``Database``.

Each method validates its arguments (raising ``InvalidInput`` before anything is queued), then
runs one synchronous function from ``funding``, ``decisions``, ``payments``, ``topups``,
``completion`` or ``refunds`` inside the writer's transaction (see
``storage.database``): it fully happens or not at all, and returns once durably committed. Every
operation has an idempotency key — the caller's (``credit_pool``, ``credit_balance``,
``confirm_payment``, ``confirm_topup``, ``begin_payout``) or ``job:<id>:<step>``; a repeat returns
the stored original result and moves nothing; reusing a key with other arguments raises
``IdempotencyConflict``. Reads run on a snapshot and write nothing.
"""

from __future__ import annotations

from storage import completion, decisions, funding, leases, payments, refunds, subsidy, topups
from storage.accounts import POOL, SUBSIDY, balance_account, get_account
from storage.amounts import nonneg_msat, positive_msat, text_id
from storage.database import Database
from storage.errors import InvalidAmount, InvalidInput
from storage.jobs import get_job, jobs_in_state, overdue_invoices, recent_jobs
from storage.leases import Replica
from storage.lifecycle import JobState, PayoutState
from storage.limits import Clock, Limits, system_clock, utc_day
from storage.outcomes import (
    Allowance,
    BalanceView,
    Completion,
    Credit,
    CreditedPayment,
    Decision,
    Failure,
    JobRecord,
    OpenInvoice,
    PartialGrant,
    PaymentOutcome,
    Payout,
    PoolFunding,
    PoolStatus,
    Refund,
    TopupPayment,
    TopupRecord,
)
from storage.sql import Connection


class Ledger:
    """The money operations of the agent: ``Ledger(db, limits, clock=system_clock)``."""

    def __init__(self, db: Database, limits: Limits, clock: Clock = system_clock) -> None:
        if not isinstance(limits, Limits):
            raise InvalidInput("limits must be a Limits")
        self.db = db
        self.limits = limits
        self.clock = clock

    # ------------------------------------------------------------------ funding

    async def credit_pool(
        self, amount_msat: int, key: str, *, source: str = "zap", zapper_pubkey: str | None = None,
        note: str = "",
    ) -> Credit:
        """Fund the pool: a zap (``source="zap"``, with its zapper and the note they gave, at
        most 1000 printable characters, kept with the credit) or an operator top-up."""
        amount = positive_msat(amount_msat)
        text_id(key, "key")
        if source not in funding.POOL_SOURCES:
            raise InvalidInput(f"source must be one of {sorted(funding.POOL_SOURCES)}")
        if zapper_pubkey is not None:
            text_id(zapper_pubkey, "zapper_pubkey")
        if note:
            text_id(note, "note", 1000)
        now = self.clock()
        return await self.db.write(
            lambda conn: funding.credit_pool(conn, amount, key, source, zapper_pubkey, now, note)
        )

    async def credit_balance(
        self, pubkey: str, amount_msat: int, key: str, reason: str = "payment"
    ) -> Credit:
        """Money received for ``pubkey`` (a top-up, a payment that cannot go to a job)."""
        text_id(pubkey, "pubkey")
        amount = positive_msat(amount_msat)
        text_id(key, "key")
        text_id(reason, "reason", 64)
        if reason in topups.TOPUP_CODES:
            raise InvalidInput(f"reason {reason!r} is reserved for top-up invoices")
        now = self.clock()
        return await self.db.write(
            lambda conn: funding.credit_balance(conn, pubkey, amount, key, reason, now)
        )

    # ------------------------------------------------------------------ decisions

    async def decide(self, job_id: str, pubkey: str, estimate_msat: int, *,
                     subsidised: bool = True) -> Decision:
        """Decide free / session / partial / gate for a new job and record the job, atomically.

        free: the pool is reserved in this same transaction (job ``running``); session: the
        estimate is held from the asker's balance in this same transaction (job ``running``);
        partial and gate: nothing is moved (job ``quoted``: attach an invoice next). A repeat
        with the same arguments returns the original decision. ``subsidised=False``: the pool
        gives nothing (session or gate; ``Reason.PAID_ONLY``).
        """
        text_id(job_id, "job_id")
        text_id(pubkey, "pubkey")
        estimate = positive_msat(estimate_msat, "estimate_msat")
        _flag(subsidised, "subsidised")
        now, limits = self.clock(), self.limits
        return await self.db.write(
            decisions.prefetched_decide(limits, job_id, pubkey, estimate, now, subsidised))

    async def decide_dry_run(self, pubkey: str, estimate_msat: int, *,
                             subsidised: bool = True) -> Decision:
        """The decision ``decide`` would take now (``job_id=""``, session included); writes
        nothing at all."""
        text_id(pubkey, "pubkey")
        estimate = positive_msat(estimate_msat, "estimate_msat")
        _flag(subsidised, "subsidised")
        day, limits = utc_day(self.clock()), self.limits
        return await self.db.read(
            lambda conn: decisions.quote(conn, limits, "", pubkey, estimate, day, subsidised)
        )

    # ------------------------------------------------------------------ invoices and payments

    async def attach_invoice(
        self, job_id: str, payment_hash: str, amount_msat: int, expires_at: int
    ) -> JobRecord:
        """Record a quoted job's invoice. ``amount_msat`` is a whole number of sats: the job's
        work amount rounded up (``whole_sats_up(decision.work_amount_msat)``); anything else is
        ``InvalidAmount``. A repeat with the same terms returns the record."""
        text_id(job_id, "job_id")
        text_id(payment_hash, "payment_hash")
        amount = positive_msat(amount_msat)
        if amount % 1000:
            raise InvalidAmount(f"invoice amount {amount} msat is not a whole number of sats")
        _epoch(expires_at)
        now = self.clock()
        return await self.db.write(
            payments.prefetched_attach_invoice(job_id, payment_hash, amount, expires_at, now))

    async def confirm_payment(self, ref: str, amount_msat: int, key: str) -> PaymentOutcome:
        """A payment for the job whose id or invoice payment hash is ``ref``; once per ``key``.

        See ``PaymentVerdict``: only PAID and OVERPAID let the work start; every other payment
        becomes the payer's balance (or, TERMS_CHANGED, a pending refund).
        """
        text_id(ref, "ref")
        amount = positive_msat(amount_msat)
        text_id(key, "key")
        now, limits = self.clock(), self.limits
        return await self.db.write(
            payments.prefetched_confirm_payment(limits, ref, amount, key, now))

    async def reserve_partial_grant(self, job_id: str) -> PartialGrant:
        """Reserve a paid partial job's grant, re-validating pool and daily limits (once).

        ``confirm_payment`` does it for you; calling it again returns the same result.
        """
        text_id(job_id, "job_id")
        now, limits = self.clock(), self.limits
        return await self.db.write(
            lambda conn: payments.reserve_partial_grant(conn, limits, job_id, now)
        )

    async def expire_job(self, job_id: str) -> JobRecord:
        """An unpaid job's invoice expired: it moves no money. Repeats, and a cancelled job:
        no-op."""
        text_id(job_id, "job_id")
        now = self.clock()
        return await self.db.write(lambda conn: payments.expire_job(conn, job_id, now))

    # ------------------------------------------------------------------ top-up invoices

    async def record_topup(
        self, pubkey: str, payment_hash: str, amount_msat: int, expires_at: int
    ) -> TopupRecord:
        """Record a top-up invoice BEFORE showing it: its payment becomes ``pubkey``'s balance.

        A repeat with the same terms returns the record; a payment hash already used (by another
        top-up or by a job's invoice) raises ``IdempotencyConflict``."""
        text_id(pubkey, "pubkey")
        text_id(payment_hash, "payment_hash")
        amount = positive_msat(amount_msat)
        _epoch(expires_at)
        now = self.clock()
        return await self.db.write(
            lambda conn: topups.record_topup(conn, pubkey, payment_hash, amount, expires_at, now)
        )

    async def confirm_topup(self, payment_hash: str, amount_msat: int, key: str) -> TopupPayment:
        """A payment for a top-up invoice: all of it becomes the owner's balance, once per
        ``key`` (use the same ``pay:<hash>`` key as job payments). See ``TopupResult``.
        ``UnknownTopup`` when no top-up has that payment hash."""
        text_id(payment_hash, "payment_hash")
        amount = positive_msat(amount_msat)
        text_id(key, "key")
        now = self.clock()
        return await self.db.write(
            lambda conn: topups.confirm_topup(conn, payment_hash, amount, key, now)
        )

    async def expire_topup(self, payment_hash: str) -> TopupRecord:
        """An unpaid top-up's invoice expired: it moves no money (a later payment is still
        credited, ``LATE``). Repeats are no-ops; a paid top-up raises ``IllegalTransition``."""
        text_id(payment_hash, "payment_hash")
        now = self.clock()
        return await self.db.write(lambda conn: topups.expire_topup(conn, payment_hash, now))

    async def topup(self, payment_hash: str) -> TopupRecord:
        text_id(payment_hash, "payment_hash")
        return await self.db.read(lambda conn: topups.get_topup(conn, payment_hash))

    async def recent_topups(self, pubkey: str, limit: int = 10) -> list[TopupRecord]:
        text_id(pubkey, "pubkey")
        _limit(limit)
        return await self.db.read(lambda conn: topups.recent_topups(conn, pubkey, limit))

    async def open_invoices(self) -> list[OpenInvoice]:
        """Every invoice still awaiting payment — jobs ``invoiced`` and top-ups ``open`` —
        soonest expiry first, including those past expiry not yet expired (poll each, then
        ``expire_job`` / ``expire_topup`` the ones that can no longer be paid)."""
        return await self.db.read(topups.open_invoices)

    async def credited_payments(
        self, since: int, after_transfer: int = 0
    ) -> list[CreditedPayment]:
        """Incoming payments that became (partly) a balance at or after ``since`` (epoch
        seconds) by a transfer whose id is above ``after_transfer`` (the last one seen: a
        cheap range), oldest first, with their stored outcomes: late, double, over- and
        under-paid job payments, payments for jobs that take none, and top-ups."""
        if type(since) is not int:
            raise InvalidInput("since must be an int of epoch seconds")
        if type(after_transfer) is not int or after_transfer < 0:
            raise InvalidInput("after_transfer must be a non-negative int")
        return await self.db.read(
            lambda conn: payments.credited_payments(conn, since, after_transfer))

    # ------------------------------------------------------------------ the work

    async def start(self, job_id: str) -> JobRecord:
        """A worker picks a paid partial or gate job: ``paid → running`` (a running job: no-op).

        Work starts only on a ``running`` job; ``settle`` takes only a ``running`` job."""
        text_id(job_id, "job_id")
        now = self.clock()
        return await self.db.write(completion.prefetched_start(job_id, now))

    async def settle(self, job_id: str, actual_msat: int) -> Completion:
        """The work of a ``running`` job is done with real cost ``actual_msat`` (every serve;
        never above the estimate). Free: the pool keeps the actual; session: the balance pays
        actual minus the subsidy; partial and gate: the seed's refund math. Once per job."""
        text_id(job_id, "job_id")
        actual = nonneg_msat(actual_msat, "actual_msat")
        now = self.clock()
        return await self.db.write(completion.prefetched_settle(job_id, actual, now))

    async def fail(self, job_id: str, reason: str) -> Failure:
        """The work of a ``running`` or ``paid`` job failed or will not run: every reservation
        and hold is released; whatever was paid becomes a pending refund. Once per job."""
        text_id(job_id, "job_id")
        text_id(reason, "reason", 200)
        now = self.clock()
        return await self.db.write(lambda conn: completion.fail(conn, job_id, reason, now))

    async def cancel(self, job_id: str) -> JobRecord:
        """Withdraw an unpaid job (``quoted | invoiced → cancelled``): nothing moves; a later
        payment of its invoice becomes balance (``LATE``). Repeats, and an expired job: no-op."""
        text_id(job_id, "job_id")
        now = self.clock()
        return await self.db.write(lambda conn: completion.cancel(conn, job_id, now))

    # ------------------------------------------------------------------ refunds and payouts

    async def credit_refund_to_balance(self, job_id: str) -> Refund:
        """Keep a pending refund as balance instead of a payout (once)."""
        text_id(job_id, "job_id")
        now = self.clock()
        return await self.db.write(lambda conn: refunds.credit_refund(conn, job_id, now))

    async def begin_payout(
        self, job_id: str, destination: str, key: str, amount_msat: int | None = None, *,
        replica: Replica | None = None,
    ) -> Payout:
        """Record a refund's payout BEFORE sending it; the refund becomes ``paying``.

        ``amount_msat`` (default: the whole refund) may be less than the refund: confirming the
        payout then credits the remainder to the asker's balance in the same transaction.
        ``replica``: the payout is leased to it in the same transaction (the one replica that
        sends it; ``claim_payout``)."""
        text_id(job_id, "job_id")
        text_id(destination, "destination", 4096)
        text_id(key, "key")
        amount = None if amount_msat is None else positive_msat(amount_msat)
        now = self.clock()

        def run(conn: Connection) -> Payout:
            payout = refunds.begin_payout(conn, job_id, destination, key, now, amount)
            if replica is not None:
                leases.take_payout(conn, payout.payout_id, replica, now)
            return payout

        return await self.db.write(run)

    async def claim_payout(self, payout_id: int, replica: Replica) -> bool:
        """Lease a payout still ``sending`` to ``replica`` before the wallet is asked about it;
        False while another live replica holds it (or it is finished)."""
        _payout_id(payout_id)
        now = self.clock()
        return await self.db.write(
            lambda conn: leases.take_payout(conn, payout_id, replica, now))

    async def confirm_payout(self, payout_id: int, preimage: str, fee_msat: int = 0) -> Payout:
        """The payout was paid: the refund is ``paid``, with the preimage as its reference (the
        unsent remainder of a partial payout becomes the asker's balance)."""
        _payout_id(payout_id)
        text_id(preimage, "preimage")
        fee = nonneg_msat(fee_msat, "fee_msat")
        now = self.clock()
        return await self.db.write(
            lambda conn: refunds.confirm_payout(conn, payout_id, preimage, fee, now)
        )

    async def fail_payout(self, payout_id: int, reason: str) -> Payout:
        """The payout failed for sure: the refund is ``pending`` (claimable) again."""
        _payout_id(payout_id)
        text_id(reason, "reason", 200)
        now = self.clock()
        return await self.db.write(lambda conn: refunds.fail_payout(conn, payout_id, reason, now))

    async def unfinished_payouts(self) -> list[Payout]:
        """Payouts recorded but neither confirmed nor failed (ask the wallet after a restart)."""
        return await self.db.read(lambda conn: refunds.list_payouts(conn, PayoutState.SENDING))

    async def pending_refunds(self, pubkey: str) -> list[Refund]:
        """``pubkey``'s refunds that are pending or being paid out."""
        text_id(pubkey, "pubkey")
        return await self.db.read(lambda conn: refunds.pending_refunds(conn, pubkey))

    async def recent_zaps(self, limit: int = 10) -> list[PoolFunding]:
        """The newest ``limit`` zaps that funded the pool: zapper, amount, note, when."""
        _limit(limit)
        return await self.db.read(lambda conn: funding.recent_zaps(conn, limit))

    async def refunds_owed(self) -> tuple[int, int]:
        """How many refunds are owed (pending or being paid out), and their sum in msat."""
        def run(conn: Connection) -> tuple[int, int]:
            count, total = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(refund_msat), 0) FROM jobs"
                " WHERE refund_state IN ('pending', 'paying')").fetchone()
            return int(count), int(total)

        return await self.db.read(run)

    # ------------------------------------------------------------------ reads

    async def job(self, job_id: str) -> JobRecord:
        text_id(job_id, "job_id")
        return await self.db.read(lambda conn: get_job(conn, job_id))

    async def jobs_in_state(self, *states: JobState) -> list[JobRecord]:
        """Every job in one of ``states``, oldest first (after a restart: ``JobState.PAID`` jobs
        await a worker, ``JobState.RUNNING`` jobs had their work interrupted: run or fail
        them)."""
        if not states or not all(isinstance(s, JobState) for s in states):
            raise InvalidInput("states must be one or more JobState values")
        return await self.db.read(lambda conn: jobs_in_state(conn, states))

    async def overdue_invoices(self) -> list[JobRecord]:
        """Unpaid jobs whose invoice has expired by now (pass each to ``expire_job``)."""
        now = self.clock()
        return await self.db.read(lambda conn: overdue_invoices(conn, now))

    async def recent_jobs(self, pubkey: str, limit: int = 10) -> list[JobRecord]:
        text_id(pubkey, "pubkey")
        _limit(limit)
        return await self.db.read(lambda conn: recent_jobs(conn, pubkey, limit))

    async def balance(self, pubkey: str) -> BalanceView:
        """Available balance, amount held by running sessions, refunds owed."""
        text_id(pubkey, "pubkey")

        def run(conn: Connection) -> BalanceView:
            acc = get_account(conn, balance_account(pubkey))
            owed = sum(r.amount_msat for r in refunds.pending_refunds(conn, pubkey))
            return BalanceView(pubkey, acc.available_msat, acc.debits_pending, owed)

        return await self.db.read(run)

    async def allowance(self, pubkey: str) -> Allowance:
        """What is left of ``pubkey``'s free allowance today (UTC)."""
        text_id(pubkey, "pubkey")
        day, limits = utc_day(self.clock()), self.limits

        def run(conn: Connection) -> Allowance:
            absorbed, jobs = subsidy.usage(conn, pubkey, day)
            return Allowance(
                pubkey,
                day,
                max(0, limits.daily_free_msat - absorbed),
                max(0, limits.daily_free_jobs - jobs),
            )

        return await self.db.read(run)

    async def pool_status(self) -> PoolStatus:
        """The public pool figures: available, reserved, spent today, totals, zaps, zappers."""
        day, cap = utc_day(self.clock()), self.limits.pool_daily_cap_msat

        def run(conn: Connection) -> PoolStatus:
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
                int(conn.execute("SELECT COALESCE(SUM(jobs), 0) FROM daily_usage WHERE day = ?",
                                 (day,)).fetchone()[0]),
            )

        return await self.db.read(run)


def _flag(value: object, name: str) -> None:
    if type(value) is not bool:
        raise InvalidInput(f"{name} must be a bool")


def _payout_id(value: object) -> int:
    if type(value) is not int or value <= 0:
        raise InvalidInput("payout_id must be a positive int")
    return value


def _limit(value: object) -> int:
    if type(value) is not int or not 0 < value <= 1000:
        raise InvalidInput("limit must be an int in 1..1000")
    return value


def _epoch(value: object) -> int:
    if type(value) is not int or value <= 0 or value > 2**62:
        raise InvalidInput("expires_at must be a positive int of epoch seconds")
    return value
