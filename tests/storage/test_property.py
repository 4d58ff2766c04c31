"""A stateful property test: random sequences of every ledger operation, invariants after each step.

Includes failures, expiries, duplicates of every idempotency key and UTC day boundaries. After
every step: ``check`` finds no violation (balances = journal, journal sums to zero, nothing below
zero, daily counters = journal and within limits, escrow/refunds = job records); every external
receipt is counted exactly once; and an operation that raised changed nothing at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from storage import (
    Database,
    IdempotencyConflict,
    Ledger,
    LedgerError,
    Limits,
    PaymentVerdict,
    Serve,
    check,
    whole_sats_up,
)
from storage.sql import Connection
from tests.storage.support import ManualClock

T = TypeVar("T")

LIMITS = Limits(daily_free_msat=50_000, daily_free_jobs=3, pool_daily_cap_msat=80_000)
PUBKEYS = st.sampled_from(["alice", "bob", "carol"])
AMOUNTS = st.integers(min_value=1, max_value=60_000)
KEYS = st.integers(min_value=0, max_value=7)  # small: duplicates are frequent
PICK = st.integers(min_value=0, max_value=10_000)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, location: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock(1_767_225_600 - 1800)
        self.db = self.run(Database.open(location))
        self.ledger = Ledger(self.db, LIMITS, clock=self.clock)
        self.jobs: list[str] = []
        self.payouts: list[int] = []
        self.topups: list[str] = []
        self.keys: dict[str, tuple[str, object]] = {}  # key → (op, args): first use wins
        self.zapped = 0      # sum over distinct pool-credit keys
        self.received = 0    # sum over distinct payment / balance keys
        self.n = 0
        self.counted: set[str] = set()

    def run(self, aw: Awaitable[T]) -> T:
        return self.loop.run_until_complete(aw)

    def teardown(self) -> None:
        self.run(self.db.close())
        self.loop.close()

    def _snapshot(self) -> tuple[object, ...]:
        """Every row of every table of the ledger."""
        def rows(conn: Connection) -> tuple[object, ...]:
            return tuple(
                tuple(conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall())  # noqa: S608
                for t in ("accounts", "transfers", "jobs", "daily_usage", "pool_daily",
                          "payouts", "operations", "topups"))
        return self.run(self.db.read(rows))

    def attempt(self, aw: Awaitable[T]) -> T | None:
        """Run an operation; if it raises a LedgerError, assert it changed nothing."""
        before = self._snapshot()
        try:
            result = self.run(aw)
        except LedgerError as exc:
            event(f"refused: {type(exc).__name__}")
            assert self._snapshot() == before
            return None
        event(f"done: {type(result).__name__}")
        return result

    def _pick(self, items: list[T], i: int) -> T:
        return items[i % len(items)]

    def _new_job(self) -> str:
        self.n += 1
        return f"job{self.n}"

    # ---------------------------------------------------------------- funding

    @rule(amount=AMOUNTS, k=KEYS, zap=st.booleans())
    def credit_pool(self, amount: int, k: int, zap: bool) -> None:
        key = f"pool:{k}"
        source = "zap" if zap else "operator"
        try:
            self.run(self.ledger.credit_pool(amount, key, source=source, zapper_pubkey="z"))
        except IdempotencyConflict:
            assert self.keys[key] != ("pool", (amount, source))
            return
        self.keys.setdefault(key, ("pool", (amount, source)))
        if key not in self.counted:
            self.counted.add(key)
            self.zapped += amount

    @rule(pubkey=PUBKEYS, amount=AMOUNTS, k=KEYS)
    def credit_balance(self, pubkey: str, amount: int, k: int) -> None:
        key = f"bal:{k}"
        try:
            self.run(self.ledger.credit_balance(pubkey, amount, key, "topup"))
        except IdempotencyConflict:
            assert self.keys[key] != ("bal", (pubkey, amount))
            return
        self.keys.setdefault(key, ("bal", (pubkey, amount)))
        if key not in self.counted:
            self.counted.add(key)
            self.received += amount

    # ---------------------------------------------------------------- jobs

    @rule(pubkey=PUBKEYS, estimate=AMOUNTS)
    def decide(self, pubkey: str, estimate: int) -> None:
        job = self._new_job()
        d = self.run(self.ledger.decide(job, pubkey, estimate))
        assert d.absorb_msat + d.work_amount_msat == estimate
        assert d.hold_msat == (d.work_amount_msat if d.serve is Serve.SESSION else 0)
        event(f"decide: {d.serve.value}")
        self.jobs.append(job)
        assert self.run(self.ledger.decide(job, pubkey, estimate)) == d  # duplicate: same answer

    @rule(pubkey=PUBKEYS, estimate=AMOUNTS)
    def dry_run(self, pubkey: str, estimate: int) -> None:
        before = self._snapshot()
        self.run(self.ledger.decide_dry_run(pubkey, estimate))
        assert self._snapshot() == before

    @precondition(lambda self: self.jobs)
    @rule(i=PICK, off=st.sampled_from([0, 0, 0, -1000, 1000, -1]))
    def attach_invoice(self, i: int, off: int) -> None:
        """The work amount in whole sats (``off`` 0); anything else must be refused."""
        job = self._pick(self.jobs, i)
        rec = self.run(self.ledger.job(job))
        amount = max(whole_sats_up(rec.work_amount_msat) + off, 1000)
        r = self.attempt(self.ledger.attach_invoice(job, f"hash-{job}", amount,
                                                    self.clock.now + 600))
        if r is not None:
            assert r.invoice_msat == whole_sats_up(r.work_amount_msat)

    @precondition(lambda self: self.jobs)
    @rule(i=PICK, how=st.sampled_from(["invoice", "work", "over", "under"]), k=KEYS)
    def confirm_payment(self, i: int, how: str, k: int) -> None:
        job = self._pick(self.jobs, i)
        rec = self.run(self.ledger.job(job))
        work = max(rec.work_amount_msat, 2)
        invoice = whole_sats_up(work)
        amount = {"invoice": invoice, "work": work, "over": invoice + 777, "under": work - 1}[how]
        key = f"pay:{k}"
        before_first = key in self.counted
        out = self.attempt(self.ledger.confirm_payment(job, amount, key))
        if out is not None:
            event(f"payment: {out.result.value}")
        if out is not None and not before_first:
            self.counted.add(key)
            self.received += out.amount_msat
            if out.result is PaymentVerdict.PAID:  # all of it escrowed
                assert rec.work_amount_msat <= out.amount_msat <= invoice
                assert self.run(self.ledger.job(job)).paid_msat == out.amount_msat
            if out.result is PaymentVerdict.OVERPAID:  # the invoice escrowed, the rest balance
                assert out.credited_balance_msat == out.amount_msat - invoice

    @precondition(lambda self: self.jobs)
    @rule(i=PICK, fraction=st.integers(min_value=0, max_value=100))
    def settle(self, i: int, fraction: int) -> None:
        job = self._pick(self.jobs, i)
        rec = self.run(self.ledger.job(job))
        actual = rec.estimate_msat * fraction // 100
        s = self.attempt(self.ledger.settle(job, actual))
        if s is None:
            return
        event(f"settled: {s.serve.value}")
        assert s.serve == rec.serve
        assert min(s.charged_msat, s.absorbed_msat, s.refund_msat, s.released_msat) >= 0
        if s.serve is Serve.FREE:
            assert (s.absorbed_msat, s.charged_msat, s.refund_msat) == (actual, 0, 0)
            assert s.released_msat == rec.reserved_msat - actual
        elif s.serve is Serve.SESSION:
            assert s.absorbed_msat + s.charged_msat == actual and s.refund_msat == 0
            assert s.absorbed_msat == min(actual, rec.reserved_msat)  # reserved at decision
            assert s.released_msat == rec.estimate_msat - actual  # pool's rest + hold's rest
        else:  # all it held: charged, a refund of whole sats, the sub-sat rest as balance
            assert s.charged_msat + s.refund_msat + s.credited_balance_msat == rec.paid_msat
            assert s.refund_msat % 1000 == 0 and s.credited_balance_msat < 1000
        assert self.run(self.ledger.settle(job, actual)) == s  # duplicate

    @precondition(lambda self: self.jobs)
    @rule(i=PICK)
    def start(self, i: int) -> None:
        self.attempt(self.ledger.start(self._pick(self.jobs, i)))

    @precondition(lambda self: self.jobs)
    @rule(i=PICK)
    def fail(self, i: int) -> None:
        job = self._pick(self.jobs, i)
        rec = self.run(self.ledger.job(job))
        f = self.attempt(self.ledger.fail(job, "boom"))
        if f is not None:
            assert f.refund_msat + f.credited_balance_msat == rec.paid_msat
            assert f.refund_msat % 1000 == 0 and f.credited_balance_msat < 1000

    @precondition(lambda self: self.jobs)
    @rule(i=PICK)
    def cancel(self, i: int) -> None:
        self.attempt(self.ledger.cancel(self._pick(self.jobs, i)))

    @precondition(lambda self: self.jobs)
    @rule(i=PICK)
    def expire_job(self, i: int) -> None:
        self.attempt(self.ledger.expire_job(self._pick(self.jobs, i)))

    @rule(pubkey=PUBKEYS, estimate=AMOUNTS, pay=st.sampled_from(["exact", "over", "late", "none"]),
          fraction=st.integers(min_value=-1, max_value=100),
          refund=st.sampled_from(["payout", "payout_fails", "credit", "keep"]), k=KEYS)
    def whole_job(self, pubkey: str, estimate: int, pay: str, fraction: int, refund: str,
                  k: int) -> None:
        """One coherent job from decision to refund (fraction -1: the work fails)."""
        job = self._new_job()
        d = self.run(self.ledger.decide(job, pubkey, estimate))
        self.jobs.append(job)
        event(f"whole_job: {d.serve.value}")
        if d.serve in (Serve.PARTIAL, Serve.GATE):
            invoice = whole_sats_up(d.work_amount_msat)
            self.run(self.ledger.attach_invoice(job, f"hash-{job}", invoice,
                                                self.clock.now + 600))
            if pay == "none":
                return
            if pay == "late":
                self.clock.advance(601)
            amount = invoice + (5 if pay == "over" else 0)
            key = f"pay:{job}:{k}"
            out = self.run(self.ledger.confirm_payment(f"hash-{job}", amount, key))
            event(f"whole_job payment: {out.result.value}")
            if key not in self.counted:
                self.counted.add(key)
                self.received += amount
            if not out.job_paid:
                return
            self.run(self.ledger.start(job))
        if fraction < 0:
            self.run(self.ledger.fail(job, "backend down"))
        else:
            self.run(self.ledger.settle(job, estimate * fraction // 100))
        rec = self.run(self.ledger.job(job))
        if rec.refund_state.value != "pending" or refund == "keep":
            return
        if refund == "credit":
            self.run(self.ledger.credit_refund_to_balance(job))
            return
        p = self.run(self.ledger.begin_payout(job, "lnbc-dest", f"po:{job}:{k}"))
        self.payouts.append(p.payout_id)
        if refund == "payout":
            self.run(self.ledger.confirm_payout(p.payout_id, "preimage", k))
        else:
            self.run(self.ledger.fail_payout(p.payout_id, "no route"))
        event(f"whole_job refund: {refund}")

    # ---------------------------------------------------------------- refunds

    @precondition(lambda self: self.jobs)
    @rule(i=PICK, k=KEYS, short=st.sampled_from([0, 0, 1, 999]))
    def begin_payout(self, i: int, k: int, short: int) -> None:
        job = self._pick(self.jobs, i)
        owed = self.run(self.ledger.job(job)).refund_msat
        amount = owed - short if short and owed > short else None  # some send less than owed
        p = self.attempt(
            self.ledger.begin_payout(job, "lnbc-dest", f"po:{job}:{k}", amount_msat=amount)
        )
        if p is not None and p.payout_id not in self.payouts:
            self.payouts.append(p.payout_id)

    @precondition(lambda self: self.payouts)
    @rule(i=PICK, fee=st.integers(min_value=0, max_value=50))
    def confirm_payout(self, i: int, fee: int) -> None:
        self.attempt(self.ledger.confirm_payout(self._pick(self.payouts, i), "preimage", fee))

    @precondition(lambda self: self.payouts)
    @rule(i=PICK)
    def fail_payout(self, i: int) -> None:
        self.attempt(self.ledger.fail_payout(self._pick(self.payouts, i), "no route"))

    @precondition(lambda self: self.jobs)
    @rule(i=PICK)
    def credit_refund(self, i: int) -> None:
        self.attempt(self.ledger.credit_refund_to_balance(self._pick(self.jobs, i)))

    # ---------------------------------------------------------------- top-ups

    @rule(pubkey=PUBKEYS, amount=AMOUNTS, h=st.integers(min_value=0, max_value=4),
          ttl=st.sampled_from([60, 600]), job_hash=st.booleans())
    def record_topup(self, pubkey: str, amount: int, h: int, ttl: int, job_hash: bool) -> None:
        payment_hash = f"hash-{self._pick(self.jobs, h)}" if job_hash and self.jobs else f"t{h}"
        r = self.attempt(
            self.ledger.record_topup(pubkey, payment_hash, amount, self.clock.now + ttl)
        )
        if r is not None and r.payment_hash not in self.topups:
            self.topups.append(r.payment_hash)

    @precondition(lambda self: self.topups)
    @rule(i=PICK, amount=AMOUNTS, k=KEYS)
    def confirm_topup(self, i: int, amount: int, k: int) -> None:
        key = f"pay:{k}"  # the same keys as job payments: a clash must be refused
        before_first = key in self.counted
        out = self.attempt(self.ledger.confirm_topup(self._pick(self.topups, i), amount, key))
        if out is not None:
            event(f"top-up: {out.result.value}")
            assert out.credited_balance_msat == out.amount_msat
        if out is not None and not before_first:
            self.counted.add(key)
            self.received += out.amount_msat

    @precondition(lambda self: self.topups)
    @rule(i=PICK)
    def expire_topup(self, i: int) -> None:
        self.attempt(self.ledger.expire_topup(self._pick(self.topups, i)))

    # ---------------------------------------------------------------- time

    @rule(seconds=st.sampled_from([1, 300, 601, 1800, 86_400]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    # ---------------------------------------------------------------- invariants

    @invariant()
    def ledger_is_consistent(self) -> None:
        report = self.run(check(self.db, LIMITS))
        assert report.violations == []
        b = report.balances
        assert b["pool"] - report.pending["pool"] >= 0
        for account, balance in b.items():
            if account not in ("zaps_in", "operator", "lightning_in"):
                assert balance - report.pending[account] >= 0
        assert -(b["zaps_in"] + b["operator"]) == self.zapped + b["fees"]
        assert -b["lightning_in"] == self.received


def test_ledger_machine(new_location: Callable[[], str]) -> None:
    """Every example on a fresh database of the test's engine."""

    class Machine(LedgerMachine):
        def __init__(self) -> None:
            super().__init__(new_location())

    run_state_machine_as_test(Machine, settings=settings(
        max_examples=150, stateful_step_count=50, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]))
