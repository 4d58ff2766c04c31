"""Top-up invoices: prepaid balance bought with an invoice that belongs to no job.

``record_topup`` stores the invoice (owner, payment hash, amount, expiry) when it is made, before
the payer sees it, so a payment that arrives while the agent is down, or after a restart, is still
credited. ``confirm_topup`` credits a payment to the owner's balance once per key (callers use the
same ``pay:<hash>`` key as job payments): paid while open → ``CREDITED`` (any amount: what arrived
is credited) and the top-up is ``paid``; paid after it expired → ``LATE``, credited all the same;
a payment under another key for a top-up already paid → ``DUPLICATE``, credited too. The money is
never lost. ``expire_topup`` closes an unpaid top-up and moves no money. ``open_invoices`` lists
the job and top-up invoices still awaiting payment (for polling after a restart).

States move along ``storage.lifecycle.TOPUP_LIFECYCLE``: ``open → paid``, ``open → expired``,
``expired → paid`` (a late payment), ``paid → paid`` (a duplicate).
"""

from __future__ import annotations

from storage.accounts import LIGHTNING_IN, Meta, balance_account, transfer
from storage.errors import IdempotencyConflict, UnknownTopup
from storage.lifecycle import TOPUP_LIFECYCLE, TopupOp, TopupState
from storage.operations import once
from storage.outcomes import InvoiceKind, OpenInvoice, TopupPayment, TopupRecord, TopupResult
from storage.sql import Connection

_COLUMNS = "payment_hash, pubkey, amount_msat, expires_at, state, paid_msat, created_at, updated_at"

_CODES = {
    TopupResult.CREDITED: "topup_paid",
    TopupResult.LATE: "topup_late",
    TopupResult.DUPLICATE: "topup_duplicate",
}
"""Journal codes of the ``lightning_in → balance`` transfers a top-up payment makes (reserved:
``credit_balance`` refuses them as its ``reason``, so ``check`` can match them to top-ups)."""

TOPUP_CODES = frozenset(_CODES.values())


def _record(row: tuple[object, ...]) -> TopupRecord:
    v = list(row)
    return TopupRecord(
        str(v[0]),
        str(v[1]),
        int(str(v[2])),
        int(str(v[3])),
        TopupState(str(v[4])),
        int(str(v[5])),
        int(str(v[6])),
        int(str(v[7])),
    )


def find_topup(conn: Connection, payment_hash: str) -> TopupRecord | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM topups WHERE payment_hash = ?",  # noqa: S608
        (payment_hash,),
    ).fetchone()
    return None if row is None else _record(row)


def get_topup(conn: Connection, payment_hash: str) -> TopupRecord:
    found = find_topup(conn, payment_hash)
    if found is None:
        raise UnknownTopup(f"no top-up invoice {payment_hash!r}")
    return found


def record_topup(
    conn: Connection, pubkey: str, payment_hash: str, amount: int, expires_at: int, now: int
) -> TopupRecord:
    existing = find_topup(conn, payment_hash)
    if existing is not None:
        if (existing.pubkey, existing.amount_msat, existing.expires_at) == (
            pubkey,
            amount,
            expires_at,
        ):
            return existing
        raise IdempotencyConflict("payment hash already recorded for another top-up")
    if conn.execute("SELECT 1 FROM jobs WHERE invoice_hash = ?", (payment_hash,)).fetchone():
        raise IdempotencyConflict("payment hash already belongs to a job")
    conn.execute(
        f"INSERT INTO topups ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",  # noqa: S608
        (payment_hash, pubkey, amount, expires_at, TopupState.OPEN.value, now, now),
    )
    return get_topup(conn, payment_hash)


def confirm_topup(
    conn: Connection, payment_hash: str, amount: int, key: str, now: int
) -> TopupPayment:
    def compute() -> TopupPayment:
        topup = get_topup(conn, payment_hash)
        state = TOPUP_LIFECYCLE.next(topup.state, TopupOp.PAY, payment_hash)
        if topup.state is TopupState.PAID:
            result = TopupResult.DUPLICATE
        elif topup.state is TopupState.EXPIRED or now > topup.expires_at:
            result = TopupResult.LATE
        else:
            result = TopupResult.CREDITED
        transfer(
            conn,
            f"{key}:balance",
            LIGHTNING_IN,
            balance_account(topup.pubkey),
            amount,
            Meta(_CODES[result], now, None, topup.pubkey),
        )
        conn.execute(
            "UPDATE topups SET state = ?, paid_msat = paid_msat + ?, updated_at = ?"
            " WHERE payment_hash = ?",
            (state.value, amount, now, payment_hash),
        )
        return TopupPayment(payment_hash, topup.pubkey, result, amount, topup.amount_msat, amount)

    return once(conn, key, "confirm_topup", [payment_hash, amount], TopupPayment, compute)


def expire_topup(conn: Connection, payment_hash: str, now: int) -> TopupRecord:
    topup = get_topup(conn, payment_hash)
    state = TOPUP_LIFECYCLE.next(topup.state, TopupOp.EXPIRE, payment_hash)
    if state is topup.state:  # a repeat
        return topup
    conn.execute(
        "UPDATE topups SET state = ?, updated_at = ? WHERE payment_hash = ?",
        (state.value, now, payment_hash),
    )
    return get_topup(conn, payment_hash)


def open_invoices(conn: Connection) -> list[OpenInvoice]:
    """Job invoices (``invoiced``) and top-ups (``open``) awaiting payment, soonest expiry first.

    Invoices past their expiry are included until expired (``expire_job`` / ``expire_topup``):
    a payment may still be in flight."""
    rows = conn.execute(
        "SELECT invoice_hash, 'job', pubkey, invoice_msat, invoice_expires_at, id FROM jobs"
        " WHERE state = 'invoiced' AND invoice_hash IS NOT NULL"
        " UNION ALL"
        " SELECT payment_hash, 'topup', pubkey, amount_msat, expires_at, NULL FROM topups"
        " WHERE state = 'open'"
        " ORDER BY 5, 1"
    ).fetchall()
    return [OpenInvoice(h, InvoiceKind(k), p, a, e, j) for h, k, p, a, e, j in rows]


def recent_topups(conn: Connection, pubkey: str, limit: int) -> list[TopupRecord]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM topups WHERE pubkey = ?"  # noqa: S608
        " ORDER BY created_at DESC, rowid DESC LIMIT ?",
        (pubkey, limit),
    ).fetchall()
    return [_record(r) for r in rows]
