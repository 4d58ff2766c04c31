"""Money entering the ledger: zaps and operator top-ups to the pool, payments to balances."""

from __future__ import annotations

import json

from storage.accounts import LIGHTNING_IN, OPERATOR, POOL, ZAPS_IN, Meta, balance_account, transfer
from storage.limits import utc_day
from storage.operations import once
from storage.outcomes import Credit, PoolFunding
from storage.sql import Connection

POOL_SOURCES = {"zap": ZAPS_IN, "operator": OPERATOR}


def credit_pool(
    conn: Connection,
    amount: int,
    key: str,
    source: str,
    zapper_pubkey: str | None,
    now: int,
    note: str = "",
) -> Credit:
    def compute() -> Credit:
        meta = Meta(source, now, None, zapper_pubkey, utc_day(now))
        transfer(conn, key, POOL_SOURCES[source], POOL, amount, meta)
        return Credit(key, POOL, amount, note)  # the note is kept with the credit's record

    return once(conn, key, "credit_pool", [amount, source, zapper_pubkey], Credit, compute)


def recent_zaps(conn: Connection, limit: int) -> list[PoolFunding]:
    """The newest zaps that funded the pool, with the note each credit recorded."""
    rows = conn.execute(
        "SELECT t.pubkey, t.amount_msat, t.created_at, o.result FROM transfers t"
        " LEFT JOIN operations o ON o.key = t.key"
        " WHERE t.credit_account = 'pool' AND t.code = 'zap' ORDER BY t.id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    out = []
    for pubkey, amount, created_at, result in rows:
        note = json.loads(result).get("note", "") if result else ""
        out.append(PoolFunding(pubkey, int(amount), str(note), int(created_at)))
    return out


def credit_balance(
    conn: Connection, pubkey: str, amount: int, key: str, reason: str, now: int
) -> Credit:
    account = balance_account(pubkey)

    def compute() -> Credit:
        transfer(conn, key, LIGHTNING_IN, account, amount, Meta(reason, now, None, pubkey))
        return Credit(key, account, amount)

    return once(conn, key, "credit_balance", [pubkey, amount, reason], Credit, compute)
