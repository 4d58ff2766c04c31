"""What the agent says, as pure functions of values: short lines for a phone, amounts in sats,
an invoice alone on its own line, what to do next in one sentence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage import (
    Allowance,
    BalanceView,
    Decision,
    JobRecord,
    Limits,
    PoolStatus,
    Reason,
    Refund,
)

NOT_REAL_MONEY = "⚠ Test wallet: NOT REAL MONEY."

HELP = """I answer questions. Just send one.
Free while the zap-funded pool and your daily allowance last;
otherwise I send a Lightning invoice first.

Commands:
estimate <question> – the price, nothing charged
balance – your balance, free allowance, refunds
topup <sats> – prepay; later answers come off your balance
refund [invoice] – claim a refund (to that invoice, else your lightning address)
pool – the public pool
status – your recent questions"""

ADMIN_HELP = """Admin:
admin pool | admin limits
admin pause | admin resume (free service)
admin limit <key> <value>
admin credit <sats> (fund the pool)"""


def sat_figure(msat: int) -> str:
    """An msat amount as sats, exactly (integer arithmetic): ``12``, ``12.345``, ``0.1``. The
    one way every message, page and command writes an amount."""
    whole, rest = divmod(msat, 1000)
    return f"{whole}.{rest:03d}".rstrip("0") if rest else str(whole)


def sats(msat: int) -> str:
    """``12 sats``, ``1 sat``, or ``12.345 sats`` when not whole."""
    return "1 sat" if msat == 1000 else f"{sat_figure(msat)} sats"


_WHY = {
    Reason.POOL_SHORT: "the free pool is running low",
    Reason.ALLOWANCE_SHORT: "you used today's free allowance",
    Reason.JOBS_LIMIT: "you used today's free questions",
    Reason.POOL_CAP: "the pool reached today's spending cap",
    Reason.PAID_ONLY: "a request that tags no provider is served paid only",
    Reason.COVERED: "",
}


def why(reason: Reason, paused: bool) -> str:
    return "free answers are paused" if paused else _WHY.get(reason, str(reason))


@dataclass(frozen=True, slots=True)
class QuoteTerms:
    estimate_msat: int
    absorb_msat: int
    reason: Reason


def quote(terms: QuoteTerms, invoice_msat: int, bolt11: str, expiry_s: int,
          paused: bool) -> str:
    price = sats(invoice_msat)
    if terms.absorb_msat:
        head = (f"This answer costs at most {price} (the pool pays {sats(terms.absorb_msat)} of "
                f"{sats(terms.estimate_msat)}).")
    else:
        head = f"This answer costs at most {price}."
    return (f"{head}\nWhy: {why(terms.reason, paused)}.\n\n{bolt11}\n\n"
            f"Pay within {max(1, expiry_s // 60)} min and I answer; unused sats come back.")


def estimate(decision: Decision, paused: bool) -> str:
    total = sats(decision.estimate_msat)
    serve = decision.serve.value
    if serve == "free":
        return f"Estimate: at most {total}. It would be free right now (the pool pays)."
    if serve == "session":
        return f"Estimate: at most {total}, taken from your prepaid balance."
    if serve == "partial":
        return (f"Estimate: at most {total}. The pool would pay {sats(decision.absorb_msat)}; "
                f"you would pay {sats(decision.work_amount_msat)} "
                f"({why(decision.reason, paused)}).")
    return f"Estimate: at most {total}, all paid by you ({why(decision.reason, paused)})."


def answer_footer(serve: str, cost_msat: int, charged_msat: int, refund_msat: int,
                  absorbed_msat: int) -> str:
    if serve == "free":
        return f"— free: the pool paid {sats(absorbed_msat)}"
    parts = [f"— cost {sats(cost_msat)}"]
    if absorbed_msat:
        parts.append(f"pool paid {sats(absorbed_msat)}")
    if serve == "session":
        parts.append(f"{sats(charged_msat)} from your balance")
    else:
        parts.append(f"you paid {sats(charged_msat)}")
    if refund_msat:
        parts.append(f"{sats(refund_msat)} back to you (see below)")
    return ", ".join(parts)


def refund_note(amount_msat: int, sending_to: str | None) -> str:
    if sending_to:
        return f"Refund: {sats(amount_msat)}, on its way to {sending_to}."
    whole = amount_msat // 1000
    if not whole:
        return f"Refund: {sats(amount_msat)} waiting; send `refund` to add it to your balance."
    rest = (f" (the other {sats(amount_msat % 1000)} go to your balance)"
            if amount_msat % 1000 else "")
    return (f"Refund: {sats(amount_msat)} waiting for you. Send `refund <invoice>` with an "
            f"invoice for {whole} sats{rest}, or `refund` to keep it as balance.")


def failed(reason: str, refund_msat: int, sending_to: str | None) -> str:
    text = f"Sorry, I could not answer: {reason}."
    if refund_msat:
        text += "\n" + refund_note(refund_msat, sending_to)
    else:
        text += " Nothing was charged."
    return text


def refused(reason: str) -> str:
    return f"Sorry, I cannot take this request: {reason}. Nothing was charged."


def over_bid(price_msat: int, bid_msat: int) -> str:
    return (f"This answer costs {sats(price_msat)}, above your bid of {sats(bid_msat)}. "
            f"Nothing was charged; raise the bid to at least {price_msat} msat to have it.")


def cancelled() -> str:
    return "Cancelled as you asked. Nothing was charged."


def expired() -> str:
    return "Your quote expired unpaid. Nothing was charged; ask again any time."


def balance(view: BalanceView, allowance: Allowance, refunds: Sequence[Refund]) -> str:
    lines = [f"Balance: {sats(view.available_msat)}"]
    if view.held_msat:
        lines.append(f"Held for answers in progress: {sats(view.held_msat)}")
    lines.append(f"Free today: {sats(allowance.free_msat_left)}, "
                 f"{allowance.free_jobs_left} questions left")
    if refunds:
        total = sum(r.amount_msat for r in refunds)
        lines.append(f"Refunds owed: {sats(total)} — send `refund <invoice>` to claim.")
    return "\n".join(lines)


def topup(sats_: int, bolt11: str, expiry_s: int) -> str:
    return (f"Top-up of {sats_} sats.\n\n{bolt11}\n\n"
            f"Pay within {max(1, expiry_s // 60)} min; it becomes your balance.")


def pool(status: PoolStatus, paused: bool) -> str:
    lines = [f"Pool: {sats(status.available_msat)} available",
             f"Spent today: {sats(status.spent_today_msat)}"
             + (f" of {sats(status.daily_cap_msat)} cap" if status.daily_cap_msat else ""),
             f"Funded by {status.zap_count} zaps from {status.zapper_count} zappers"]
    if paused:
        lines.append("Free answers are paused by the operator.")
    lines.append("Zap me to keep answers free for everyone.")
    return "\n".join(lines)


def status(jobs: Sequence[JobRecord]) -> str:
    if not jobs:
        return "No questions yet. Send me one!"
    lines = ["Your recent questions:"]
    for job in jobs:
        paid = f", {sats(job.charged_msat)}" if job.charged_msat else ""
        refund = (f", refund {sats(job.refund_msat)} {job.refund_state}"
                  if job.refund_msat else "")
        lines.append(f"{job.id[:8]} {job.serve} {job.state}{paid}{refund}")
    return "\n".join(lines)


def limits(values: Limits, paused: bool) -> str:
    cap = values.pool_daily_cap_msat
    return (f"daily_free_msat = {values.daily_free_msat}\n"
            f"daily_free_jobs = {values.daily_free_jobs}\n"
            f"pool_daily_cap_msat = {'none' if cap is None else cap}\n"
            f"free service {'paused' if paused else 'on'}")
