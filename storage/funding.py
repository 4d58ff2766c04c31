"""Money entering the ledger: zaps and operator top-ups to the pool, payments to balances."""

from __future__ import annotations

import sqlite3

from storage.accounts import LIGHTNING_IN, OPERATOR, POOL, ZAPS_IN, Meta, balance_account, transfer
from storage.limits import utc_day
from storage.operations import once
from storage.outcomes import Credit

POOL_SOURCES = {"zap": ZAPS_IN, "operator": OPERATOR}


def credit_pool(
    conn: sqlite3.Connection,
    amount: int,
    key: str,
    source: str,
    zapper_pubkey: str | None,
    now: int,
) -> Credit:
    def compute() -> Credit:
        meta = Meta(source, now, None, zapper_pubkey, utc_day(now))
        transfer(conn, key, POOL_SOURCES[source], POOL, amount, meta)
        return Credit(key, POOL, amount)

    return once(conn, key, "credit_pool", [amount, source, zapper_pubkey], Credit, compute)


def credit_balance(
    conn: sqlite3.Connection, pubkey: str, amount: int, key: str, reason: str, now: int
) -> Credit:
    account = balance_account(pubkey)

    def compute() -> Credit:
        transfer(conn, key, LIGHTNING_IN, account, amount, Meta(reason, now, None, pubkey))
        return Credit(key, account, amount)

    return once(conn, key, "credit_balance", [pubkey, amount, reason], Credit, compute)
