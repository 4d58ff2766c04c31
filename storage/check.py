"""A read-only audit: recompute every balance from the journal and report any difference.

Checks: each account's posted and pending columns equal the sums of its transfers; no
non-external account is below zero counting pending debits; the journal sums to zero; each pending
transfer is resolved at most once and never for more than it reserved; the daily counters equal
the subsidy in the journal (and, given ``limits``, stay within them); escrow and refunds equal what
the job records say they hold; a paid job holds between its work amount and its invoice (the work
amount in whole sats) and gives all of it back as charge plus refund; every paid refund has a
reference; each payout's state matches its
transfer and its refund (a refund being paid has exactly one payout in flight; the unsent part of
a paid refund became balance); each top-up's
credited total equals its payments in the journal, and only a paid top-up has one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from storage.accounts import EXTERNAL
from storage.amounts import whole_sats_up
from storage.database import Database
from storage.lifecycle import JobState, RefundState
from storage.limits import Limits
from storage.sql import Connection
from storage.topups import TOPUP_CODES


@dataclass(frozen=True, slots=True)
class CheckReport:
    balances: dict[str, int]  # posted balance of every account, from the journal
    pending: dict[str, int]  # pending debits of every account, from the journal
    transfers: int
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


async def check(db: Database, limits: Limits | None = None) -> CheckReport:
    """Audit the committed state of ``db`` (writes nothing)."""
    return await db.read(lambda conn: check_sync(conn, limits))


def check_sync(conn: Connection, limits: Limits | None = None) -> CheckReport:
    violations: list[str] = []
    dp: dict[str, int] = defaultdict(int)
    cp: dict[str, int] = defaultdict(int)
    dpend: dict[str, int] = defaultdict(int)
    cpend: dict[str, int] = defaultdict(int)
    resolved: dict[int, int] = {}
    pendings: dict[int, tuple[str, str, int]] = {}
    n = 0
    rows = conn.execute(
        "SELECT id, kind, debit_account, credit_account, amount_msat, pending_id FROM transfers"
        " ORDER BY id"
    ).fetchall()
    for tid, kind, debit, credit, amount, pending_id in rows:
        n += 1
        if kind == "pending":
            pendings[tid] = (debit, credit, amount)
        elif kind in ("post", "void"):
            if pending_id in resolved:
                violations.append(f"pending transfer {pending_id} resolved twice")
            resolved[pending_id] = amount
            p = pendings.get(pending_id)
            if p is None:
                violations.append(f"transfer {tid} resolves a non-pending transfer {pending_id}")
            elif (p[0], p[1]) != (debit, credit) or amount > p[2] or (kind == "void" and amount):
                violations.append(f"transfer {tid} does not match pending transfer {pending_id}")
        if kind in ("single", "post"):
            dp[debit] += amount
            cp[credit] += amount
    for tid, (debit, credit, amount) in pendings.items():
        if tid not in resolved:
            dpend[debit] += amount
            cpend[credit] += amount

    balances: dict[str, int] = {}
    pending: dict[str, int] = {}
    total = 0
    stored = conn.execute(
        "SELECT id, debits_posted, credits_posted, debits_pending, credits_pending, allow_negative"
        " FROM accounts ORDER BY id"
    ).fetchall()
    seen = set()
    for acc, s_dp, s_cp, s_dpend, s_cpend, allow_negative in stored:
        seen.add(acc)
        if (s_dp, s_cp, s_dpend, s_cpend) != (dp[acc], cp[acc], dpend[acc], cpend[acc]):
            violations.append(
                f"account {acc}: stored (debits {s_dp}, credits {s_cp},"
                f" pending {s_dpend}/{s_cpend})"
                f" but journal says ({dp[acc]}, {cp[acc]}, {dpend[acc]}/{cpend[acc]})"
            )
        bal = cp[acc] - dp[acc]
        balances[acc] = bal
        pending[acc] = dpend[acc]
        total += bal
        if bool(allow_negative) != (acc in EXTERNAL):
            violations.append(f"account {acc}: wrong allow_negative flag")
        if acc not in EXTERNAL and bal - dpend[acc] < 0:
            violations.append(f"account {acc} is below zero: {bal} msat, {dpend[acc]} pending")
    for acc in set(dp) | set(cp) | set(dpend):
        if acc not in seen:
            violations.append(f"journal mentions unknown account {acc}")
    if total != 0:
        violations.append(f"journal does not sum to zero: {total}")

    _check_daily(conn, limits, violations)
    _check_jobs(conn, balances, violations)
    return CheckReport(balances, pending, n, violations)


def _check_daily(conn: Connection, limits: Limits | None, violations: list[str]) -> None:
    # Subsidy per (pubkey, day) from the journal: posted subsidy + unresolved reservations.
    absorbed: dict[tuple[str, str], int] = defaultdict(int)
    jobs: dict[tuple[str, str], set[str]] = defaultdict(set)
    rows = conn.execute(
        "SELECT t.pubkey, t.day, t.job_id, t.kind, t.amount_msat FROM transfers t"
        " WHERE t.credit_account = 'subsidy' AND ("
        "  t.kind IN ('single', 'post') OR"
        "  (t.kind = 'pending' AND NOT EXISTS"
        "   (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)))"
    ).fetchall()
    for pubkey, day, job_id, _kind, amount in rows:
        absorbed[(pubkey, day)] += amount
        jobs[(pubkey, day)].add(job_id)
    stored = {
        (p, d): (a, j)
        for p, d, a, j in conn.execute(
            "SELECT pubkey, day, absorbed_msat, jobs FROM daily_usage"
        ).fetchall()
    }
    for k in set(stored) | set(absorbed):
        want = (absorbed.get(k, 0), len(jobs.get(k, ())))
        have = stored.get(k, (0, 0))
        if have != want:
            violations.append(f"daily usage of {k[0]} on {k[1]} is {have}, journal says {want}")
        if limits is not None and (
            want[0] > limits.daily_free_msat or want[1] > limits.daily_free_jobs
        ):
            violations.append(f"daily limit exceeded by {k[0]} on {k[1]}: {want}")
    per_day: dict[str, int] = defaultdict(int)
    for (_, day), amount in absorbed.items():
        per_day[day] += amount
    stored_days = dict(conn.execute("SELECT day, spent_msat FROM pool_daily").fetchall())
    for day in set(per_day) | set(stored_days):
        if stored_days.get(day, 0) != per_day.get(day, 0):
            violations.append(
                f"pool spending on {day} is {stored_days.get(day, 0)},"
                f" journal says {per_day.get(day, 0)}"
            )
        cap = None if limits is None else limits.pool_daily_cap_msat
        if cap is not None and per_day.get(day, 0) > cap:
            violations.append(f"pool daily cap exceeded on {day}: {per_day[day]}")


def _check_jobs(conn: Connection, balances: dict[str, int], violations: list[str]) -> None:
    states = {s.value for s in JobState}
    refund_states = {s.value for s in RefundState}
    for job_id, state, refund_state in conn.execute(
        "SELECT id, state, refund_state FROM jobs"
    ).fetchall():
        if state not in states or refund_state not in refund_states:
            violations.append(f"job {job_id}: unknown state {state} / refund {refund_state}")
    _check_paid_jobs(conn, violations)
    escrow = conn.execute(
        "SELECT CAST(COALESCE(SUM(paid_msat), 0) AS BIGINT) FROM jobs"
        " WHERE state IN ('paid', 'running')"
    ).fetchone()[0]
    if escrow != balances.get("escrow", 0):
        violations.append(
            f"escrow holds {balances.get('escrow', 0)}, paid and running jobs say {escrow}"
        )
    owed = conn.execute(
        "SELECT CAST(COALESCE(SUM(refund_msat), 0) AS BIGINT) FROM jobs"
        " WHERE refund_state IN ('pending', 'paying')"
    ).fetchone()[0]
    if owed != balances.get("refunds", 0):
        violations.append(f"refunds account holds {balances.get('refunds', 0)}, jobs owe {owed}")
    bad = conn.execute(
        "SELECT id FROM jobs WHERE refund_state = 'paid' AND refund_ref IS NULL"
    ).fetchall()
    for (job_id,) in bad:
        violations.append(f"job {job_id}: refund paid without a payout reference")
    _check_payouts(conn, violations)
    _check_topups(conn, violations)


def _check_paid_jobs(conn: Connection, violations: list[str]) -> None:
    """Invoices are the work amount in whole sats; a job holds at least its work amount and at
    most its invoice; a settled job charged and gave back all it held, a failed one gave it all
    back; what is given back is a refund of whole sats and the sub-sat rest as balance."""
    for job_id, state, work, invoice, paid, charged, refund, rest in conn.execute(
        "SELECT id, state, work_amount_msat, invoice_msat, paid_msat, charged_msat, refund_msat,"
        " (SELECT t.amount_msat FROM transfers t WHERE t.key = 'job:' || jobs.id || ':remainder')"
        " FROM jobs WHERE serve IN ('partial', 'gate')"
    ).fetchall():
        given_back = refund + (rest or 0)
        if refund % 1000 or (rest or 0) >= 1000:
            violations.append(f"job {job_id}: refund {refund} msat, {rest} msat kept as balance")
        whole = whole_sats_up(work)
        if invoice is not None and invoice != whole:
            violations.append(f"job {job_id}: invoice of {invoice} msat for a work amount {work}")
        if paid and not work <= paid <= whole:
            violations.append(f"job {job_id}: holds {paid} msat for a work amount of {work}")
        if state == JobState.DONE and (charged or 0) + given_back != paid:
            violations.append(
                f"job {job_id}: paid {paid}, charged {charged}, gave back {given_back}"
            )
        if state == JobState.FAILED and given_back != paid:
            violations.append(f"job {job_id}: failed after paying {paid}, gave back {given_back}")


def _check_payouts(conn: Connection, violations: list[str]) -> None:
    """Each payout's state matches how its pending transfer was resolved, and its refund's."""
    rows = conn.execute(
        "SELECT p.id, p.state, p.amount_msat, p.preimage, j.refund_state, j.refund_ref,"
        " (SELECT kind || ':' || amount_msat FROM transfers r WHERE r.pending_id = p.transfer_id)"
        " FROM payouts p JOIN jobs j ON j.id = p.job_id"
    ).fetchall()
    for pid, state, amount, preimage, refund_state, refund_ref, resolution in rows:
        expected = {"sending": None, "paid": f"post:{amount}", "failed": "void:0"}[state]
        if resolution != expected:
            violations.append(f"payout {pid} is {state} but its transfer is {resolution}")
        if state == "sending" and refund_state != "paying":
            violations.append(f"payout {pid} is sending but its refund is {refund_state}")
        if state == "paid" and (refund_state != "paid" or refund_ref != preimage):
            violations.append(f"payout {pid} is paid but its refund is {refund_state}")
    for pid, remainder, moved in conn.execute(
        "SELECT p.id, j.refund_msat - p.amount_msat, (SELECT t.amount_msat FROM transfers t"
        "  WHERE t.key = 'payout:' || p.id || ':remainder')"
        " FROM payouts p JOIN jobs j ON j.id = p.job_id WHERE p.state = 'paid'"
    ).fetchall():
        if (moved or 0) != remainder:
            violations.append(
                f"payout {pid} left {remainder} msat of its refund, {moved or 0} became balance"
            )
    for job_id, n in conn.execute(
        "SELECT j.id, (SELECT COUNT(*) FROM payouts p"
        "  WHERE p.job_id = j.id AND p.state = 'sending')"
        " FROM jobs j WHERE j.refund_state = 'paying'"
    ).fetchall():
        if n != 1:
            violations.append(f"job {job_id}: refund is paying with {n} payouts in flight")


def _check_topups(conn: Connection, violations: list[str]) -> None:
    """A top-up's ``paid_msat`` equals the top-up payments credited to its owner's balance."""
    marks = ", ".join("?" for _ in TOPUP_CODES)
    journal: dict[str, int] = defaultdict(int)
    for pubkey, amount in conn.execute(
        f"SELECT pubkey, amount_msat FROM transfers WHERE code IN ({marks})",  # noqa: S608
        sorted(TOPUP_CODES),
    ).fetchall():
        journal[pubkey] += amount
    recorded: dict[str, int] = defaultdict(int)
    for payment_hash, pubkey, state, paid in conn.execute(
        "SELECT payment_hash, pubkey, state, paid_msat FROM topups"
    ).fetchall():
        recorded[pubkey] += paid
        if (state == "paid") != (paid > 0):
            violations.append(f"top-up {payment_hash} is {state} with {paid} msat credited")
    for pubkey in set(journal) | set(recorded):
        if journal[pubkey] != recorded[pubkey]:
            violations.append(
                f"top-ups of {pubkey} credited {recorded[pubkey]}, journal says {journal[pubkey]}"
            )
