"""Accounts and transfers: the TigerBeetle-shaped core every money operation is built from.

An account's balance changes only through transfers. A transfer debits one account and credits
another by the same amount, so the journal always sums to zero. Kinds:

- ``single``: posted at once;
- ``pending``: reserves ``amount`` (counted in ``debits_pending`` / ``credits_pending``);
- ``post``: resolves a pending transfer, moving ``amount <= pending amount`` (the rest is released);
- ``void``: resolves a pending transfer, moving nothing.

A pending transfer is resolved at most once (a unique index). Accounts that are not external may
never go below zero counting pending debits: ``debits_posted + debits_pending <= credits_posted``
(checked here, and again by a CHECK constraint). Every transfer has a unique key: the same key
with the same terms returns the existing transfer; with other terms it raises.

These functions are synchronous and run inside the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage import prefetch
from storage.errors import IdempotencyConflict, IllegalTransition, InsufficientFunds, InvalidAmount
from storage.sql import Connection, Cursor, Held

POOL = "pool"
SUBSIDY = "subsidy"  # pool funds spent on subsidised work
REVENUE = "revenue"  # what users paid for work
ESCROW = "escrow"  # paid for a job whose work is not settled yet
REFUNDS = "refunds"  # refunds owed to users (pending or being paid out)
PAYOUTS = "payouts"  # refunds sent out over Lightning
FEES = "fees"  # Lightning routing fees of payouts
ZAPS_IN = "zaps_in"  # external: zaps funding the pool
OPERATOR = "operator"  # external: operator top-ups, and who pays routing fees
LIGHTNING_IN = "lightning_in"  # external: invoice payments received

EXTERNAL = frozenset({ZAPS_IN, OPERATOR, LIGHTNING_IN})
"""Accounts that may go negative: where money enters the ledger from outside."""

BALANCE_PREFIX = "balance:"

SYSTEM_ACCOUNTS = (POOL, SUBSIDY, REVENUE, ESCROW, REFUNDS, PAYOUTS, FEES, *sorted(EXTERNAL))
"""Created by the first migration; ``balance:<pubkey>`` accounts are created on first use."""


def balance_account(pubkey: str) -> str:
    return BALANCE_PREFIX + pubkey


@dataclass(frozen=True, slots=True)
class AccountRow:
    id: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def balance_msat(self) -> int:
        """Posted balance (credits minus debits)."""
        return self.credits_posted - self.debits_posted

    @property
    def available_msat(self) -> int:
        """What may still be debited: posted balance minus pending debits."""
        return self.credits_posted - self.debits_posted - self.debits_pending


def ensure_account(conn: Connection, account: str) -> None:
    conn.execute(
        "INSERT INTO accounts (id, allow_negative) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (account, 1 if account in EXTERNAL else 0),
    )


def get_account(conn: Connection, account: str) -> AccountRow:
    return ask_accounts(conn, (account,)).get(account)


class AccountsRead:
    """Several accounts asked for in one statement (``ask_accounts``): ``get`` reads any of
    them, as often as needed (an account without a row reads empty)."""

    __slots__ = ("_rows", "held", "ids")

    def __init__(self, held: Held, ids: tuple[str, ...]) -> None:
        self.held = held
        self.ids = ids
        self._rows: dict[str, AccountRow] | None = None

    def get(self, account: str) -> AccountRow:
        assert account in self.ids, f"account {account} was not asked for"
        if self._rows is None:
            self._rows = {str(r[0]): AccountRow(str(r[0]), r[1], r[2], r[3], r[4])
                          for r in self.held.load()}
        return self._rows.get(account) or AccountRow(account, 0, 0, 0, 0)


def ask_accounts(conn: Connection, accounts: tuple[str, ...]) -> AccountsRead:
    """Ask for ``accounts`` in one statement, without reading them yet."""
    marks = ", ".join("?" for _ in accounts)
    return AccountsRead(Held(conn.execute(
        "SELECT id, debits_posted, credits_posted, debits_pending, credits_pending"  # noqa: S608
        f" FROM accounts WHERE id IN ({marks})", accounts), prefetch.accounts_since(accounts)),
        accounts)


def available(conn: Connection, account: str) -> int:
    return get_account(conn, account).available_msat


@dataclass(frozen=True, slots=True)
class Meta:
    """Who and what a transfer is about (for audits, pool stats and daily counters)."""

    code: str
    now: int
    job_id: str | None = None
    pubkey: str | None = None
    day: str | None = None


def _ask_existing(conn: Connection, key: str) -> Cursor:
    return conn.execute(
        "SELECT id, kind, debit_account, credit_account, amount_msat, pending_id "
        "FROM transfers WHERE key = ?",
        (key,),
    )


def _existing(asked: Cursor) -> tuple[int, str, str, str, int, int | None] | None:
    row = asked.fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3], row[4], row[5])


@dataclass(frozen=True, slots=True)
class TransferReads:
    """What ``transfer`` reads, asked for ahead (``ask_transfer``): the transfer of its key, and
    the debit account (None: an external one, never short)."""

    existing: Held
    debit: AccountsRead | None

    @property
    def held(self) -> tuple[Held, ...]:
        return (self.existing,) if self.debit is None else (self.existing, self.debit.held)


def ask_transfer(conn: Connection, key: str, debit: str,
                 accounts: AccountsRead | None = None) -> TransferReads:
    """Ask for what ``transfer(conn, key, debit, …)`` reads, to be read with an operation's
    first reads (``operations.once_with(held=…)``); valid while nothing written before the
    transfer touches the debit account. ``accounts``: the debit account is among these,
    asked already."""
    if debit in EXTERNAL:
        funds = None
    elif accounts is not None and debit in accounts.ids:
        funds = accounts
    else:
        funds = ask_accounts(conn, (debit,))
    return TransferReads(Held(_ask_existing(conn, key)), funds)


def transfer_id(conn: Connection, key: str) -> int:
    """The id of the transfer of ``key`` (it exists)."""
    return int(conn.execute(TRANSFER_ID, (key,)).fetchone()[0])


TRANSFER_ID = "SELECT id FROM transfers WHERE key = ?"
"""The id of the transfer of a key, for a statement that records it (``(… WHERE key = ?)`` as a
value: NULL when there is none) without reading it back."""

_INSERT = (
    "INSERT INTO transfers (key, kind, debit_account, credit_account, amount_msat, pending_id,"
    " code, job_id, pubkey, day, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _insert(
    conn: Connection,
    key: str,
    kind: str,
    debit: str,
    credit: str,
    amount: int,
    pending_id: int | None,
    meta: Meta,
) -> None:
    conn.execute(
        _INSERT,
        (
            key,
            kind,
            debit,
            credit,
            amount,
            pending_id,
            meta.code,
            meta.job_id,
            meta.pubkey,
            meta.day,
            meta.now,
        ),
    )


def _check_funds(funds: AccountRow | None, debit: str, amount: int) -> None:
    """``funds``: the debit account (None: an external account, never short)."""
    if funds is None:
        return
    have = funds.available_msat
    if have < amount:
        raise InsufficientFunds(f"account {debit} has {have} msat available, needs {amount}")


def transfer(
    conn: Connection,
    key: str,
    debit: str,
    credit: str,
    amount: int,
    meta: Meta,
    *,
    pending: bool = False,
    asked: TransferReads | None = None,
) -> None:
    """Create a ``single`` (or ``pending``) transfer. Idempotent by ``key``. Its id is not read
    back: ``transfer_id`` reads it, ``TRANSFER_ID`` records it. ``asked``: its reads, asked for
    ahead (``ask_transfer``)."""
    kind = "pending" if pending else "single"
    reads = ask_transfer(conn, key, debit) if asked is None else asked  # one round trip
    found = _existing(reads.existing)
    funds = None if reads.debit is None else reads.debit.get(debit)
    if found is not None:
        if found[1:5] != (kind, debit, credit, amount):
            raise IdempotencyConflict(f"transfer key {key!r} already used with other terms")
        return
    if amount <= 0:
        raise InvalidAmount(f"transfer {key!r}: amounts are positive, got {amount}")
    for account in (debit, credit):
        if account.startswith(BALANCE_PREFIX):
            ensure_account(conn, account)
    _check_funds(funds, debit, amount)  # asked before ensure_account: a new one reads empty
    _insert(conn, key, kind, debit, credit, amount, None, meta)
    if pending:
        _move(conn, debit, credit, posted=0, pending=amount)
    else:
        _move(conn, debit, credit, posted=amount, pending=0)


def _move(conn: Connection, debit: str, credit: str, *, posted: int, pending: int) -> None:
    """Add ``posted`` and ``pending`` (either may be negative) to the debit account's debit
    columns and to the credit account's credit columns: both accounts in one statement."""
    conn.execute(
        "UPDATE accounts SET"
        " debits_posted = debits_posted + CASE WHEN id = ? THEN ? ELSE 0 END,"
        " debits_pending = debits_pending + CASE WHEN id = ? THEN ? ELSE 0 END,"
        " credits_posted = credits_posted + CASE WHEN id = ? THEN ? ELSE 0 END,"
        " credits_pending = credits_pending + CASE WHEN id = ? THEN ? ELSE 0 END"
        " WHERE id IN (?, ?)",
        (debit, posted, debit, pending, credit, posted, credit, pending, debit, credit),
    )
    prefetch.moved(debit, credit, posted, pending)


@dataclass(frozen=True, slots=True)
class ResolveReads:
    """What ``resolve`` reads, asked for ahead by the pending transfer's key
    (``ask_resolve``): the resolution's own key, the pending transfer (its id first), and a
    resolution of it."""

    existing: Held
    pending: Held
    resolution: Held

    @property
    def held(self) -> tuple[Held, ...]:
        return (self.existing, self.pending, self.resolution)


_PENDING = "SELECT id, kind, debit_account, credit_account, amount_msat FROM transfers"


def ask_resolve(conn: Connection, key: str, pending_key: str) -> ResolveReads:
    """Ask for what ``resolve(conn, key, <id of pending_key's transfer>, …)`` reads (one round
    trip), valid while nothing written before the resolution touches those transfers."""
    return ResolveReads(
        Held(_ask_existing(conn, key)),
        Held(conn.execute(f"{_PENDING} WHERE key = ?", (pending_key,))),
        Held(conn.execute(f"SELECT 1 FROM transfers WHERE pending_id = ({TRANSFER_ID})",  # noqa: S608
                          (pending_key,))),
    )


def _ask_resolve_by_id(conn: Connection, key: str, pending_id: int) -> ResolveReads:
    return ResolveReads(
        Held(_ask_existing(conn, key)),
        Held(conn.execute(f"{_PENDING} WHERE id = ?", (pending_id,))),
        Held(conn.execute("SELECT 1 FROM transfers WHERE pending_id = ?", (pending_id,))),
    )


def resolve(conn: Connection, key: str, pending_id: int, amount: int, meta: Meta, *,
            asked: ResolveReads | None = None) -> None:
    """Post ``amount`` (0 < amount <= pending amount) of a pending transfer, or void it (0).

    The pending amount leaves the pending columns in full; ``amount`` enters the posted ones.
    Resolving twice raises ``IllegalTransition`` (except a repeat of the same key and terms).
    ``asked``: its reads, asked for ahead by the pending transfer's key (``ask_resolve``); used
    when that transfer is ``pending_id``, else they are asked again by id.
    """
    kind = "post" if amount > 0 else "void"
    row = None if asked is None else asked.pending.fetchone()
    if asked is None or row is None or row[0] != pending_id:  # asked of another transfer
        asked = _ask_resolve_by_id(conn, key, pending_id)  # the three in one round trip
        row = asked.pending.fetchone()
    reads = asked
    found, resolved = _existing(reads.existing), reads.resolution.fetchone()
    if found is not None:
        if found[1] != kind or found[4] != amount or found[5] != pending_id:
            raise IdempotencyConflict(f"transfer key {key!r} already used with other terms")
        return
    if row is None or row[1] != "pending":
        raise IllegalTransition(f"transfer {pending_id} is not a pending transfer")
    _, _, debit, credit, reserved = row
    if amount > reserved:
        raise IllegalTransition(f"cannot post {amount} msat of a {reserved} msat reservation")
    if resolved is not None:
        raise IllegalTransition(f"pending transfer {pending_id} is already resolved")
    _insert(conn, key, kind, debit, credit, amount, pending_id, meta)
    _move(conn, debit, credit, posted=amount, pending=-reserved)
