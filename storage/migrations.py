"""Versioned schema migrations, applied at open inside one transaction each.

``PRAGMA user_version`` holds the applied version. Opening a file whose version is newer than
``LATEST`` raises ``SchemaTooNew`` and touches nothing. Applying is idempotent: each migration runs
in a ``BEGIN IMMEDIATE`` transaction that re-reads the version, so two processes opening the same
new file at once apply each step exactly once.
"""

from __future__ import annotations

import sqlite3

from storage.errors import SchemaTooNew

_V1 = """
CREATE TABLE accounts (
    id              TEXT PRIMARY KEY,
    allow_negative  INTEGER NOT NULL CHECK (allow_negative IN (0, 1)),
    debits_posted   INTEGER NOT NULL DEFAULT 0,
    credits_posted  INTEGER NOT NULL DEFAULT 0,
    debits_pending  INTEGER NOT NULL DEFAULT 0,
    credits_pending INTEGER NOT NULL DEFAULT 0,
    CHECK (allow_negative = 1 OR debits_posted + debits_pending <= credits_posted)
) STRICT;

-- Append-only journal. kind: 'single' (posted at once), 'pending' (reserves),
-- 'post' / 'void' (resolve one pending transfer, once: see the unique index).
CREATE TABLE transfers (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    key             TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL CHECK (kind IN ('single', 'pending', 'post', 'void')),
    debit_account   TEXT NOT NULL REFERENCES accounts(id),
    credit_account  TEXT NOT NULL REFERENCES accounts(id),
    amount_msat     INTEGER NOT NULL CHECK (amount_msat >= 0),
    pending_id      INTEGER REFERENCES transfers(id),
    code            TEXT NOT NULL,
    job_id          TEXT,
    pubkey          TEXT,
    day             TEXT,
    created_at      INTEGER NOT NULL,
    CHECK (debit_account <> credit_account),
    CHECK ((kind IN ('post', 'void')) = (pending_id IS NOT NULL))
) STRICT;
CREATE UNIQUE INDEX transfers_resolve_once ON transfers(pending_id) WHERE pending_id IS NOT NULL;
CREATE INDEX transfers_job ON transfers(job_id) WHERE job_id IS NOT NULL;
CREATE TRIGGER transfers_no_update BEFORE UPDATE ON transfers
    BEGIN SELECT RAISE(ABORT, 'transfers are append-only'); END;
CREATE TRIGGER transfers_no_delete BEFORE DELETE ON transfers
    BEGIN SELECT RAISE(ABORT, 'transfers are append-only'); END;

-- Results of idempotent operations: a repeat of the key returns the stored result.
CREATE TABLE operations (
    key     TEXT PRIMARY KEY,
    op      TEXT NOT NULL,
    args    TEXT NOT NULL,
    result  TEXT NOT NULL
) STRICT;

CREATE TABLE jobs (
    id                  TEXT PRIMARY KEY,
    pubkey              TEXT NOT NULL,
    serve               TEXT NOT NULL CHECK (serve IN ('free', 'partial', 'gate', 'session')),
    state               TEXT NOT NULL,
    estimate_msat       INTEGER NOT NULL CHECK (estimate_msat > 0),
    absorb_msat         INTEGER NOT NULL CHECK (absorb_msat >= 0),
    work_amount_msat    INTEGER NOT NULL CHECK (work_amount_msat >= 0),
    reserved_msat       INTEGER NOT NULL DEFAULT 0,
    reserve_transfer    INTEGER REFERENCES transfers(id),
    reserve_day         TEXT,
    hold_transfer       INTEGER REFERENCES transfers(id),
    paid_msat           INTEGER NOT NULL DEFAULT 0,
    actual_msat         INTEGER,
    absorbed_msat       INTEGER,
    charged_msat        INTEGER,
    invoice_hash        TEXT UNIQUE,
    invoice_msat        INTEGER,
    invoice_expires_at  INTEGER,
    refund_state        TEXT NOT NULL DEFAULT 'none'
                        CHECK (refund_state IN ('none', 'pending', 'paying', 'paid', 'credited')),
    refund_msat         INTEGER NOT NULL DEFAULT 0 CHECK (refund_msat >= 0),
    refund_ref          TEXT,
    error               TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
) STRICT;
CREATE INDEX jobs_pubkey ON jobs(pubkey, created_at);
CREATE INDEX jobs_refunds ON jobs(pubkey) WHERE refund_state IN ('pending', 'paying');

-- Subsidy counted per pubkey per UTC day (on reservation, corrected to actuals).
CREATE TABLE daily_usage (
    pubkey        TEXT NOT NULL,
    day           TEXT NOT NULL,
    absorbed_msat INTEGER NOT NULL DEFAULT 0 CHECK (absorbed_msat >= 0),
    jobs          INTEGER NOT NULL DEFAULT 0 CHECK (jobs >= 0),
    PRIMARY KEY (pubkey, day)
) STRICT, WITHOUT ROWID;

CREATE TABLE pool_daily (
    day         TEXT PRIMARY KEY,
    spent_msat  INTEGER NOT NULL DEFAULT 0 CHECK (spent_msat >= 0)
) STRICT, WITHOUT ROWID;

CREATE TABLE payouts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    key             TEXT NOT NULL UNIQUE,
    job_id          TEXT NOT NULL REFERENCES jobs(id),
    pubkey          TEXT NOT NULL,
    amount_msat     INTEGER NOT NULL CHECK (amount_msat > 0),
    destination     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('sending', 'paid', 'failed')),
    transfer_id     INTEGER NOT NULL REFERENCES transfers(id),
    preimage        TEXT,
    fee_msat        INTEGER,
    reason          TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX payouts_unfinished ON payouts(state) WHERE state = 'sending';

CREATE TABLE processed_events (
    event_id    TEXT PRIMARY KEY,
    claimed_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE relay_cursors (
    relay_url   TEXT PRIMARY KEY,
    since       INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO accounts (id, allow_negative) VALUES
    ('pool', 0), ('subsidy', 0), ('revenue', 0), ('escrow', 0), ('refunds', 0), ('payouts', 0),
    ('fees', 0), ('zaps_in', 1), ('operator', 1), ('lightning_in', 1);
"""

# Top-up invoices: prepaid balance bought with an invoice that belongs to no job. Recorded when
# the invoice is made, so a payment that arrives while the agent is down (or after a restart)
# is still credited to its owner. state: open (awaiting payment) → paid | expired; an expired
# top-up paid anyway is still credited (late).
_V2 = """
CREATE TABLE topups (
    payment_hash    TEXT PRIMARY KEY,
    pubkey          TEXT NOT NULL,
    amount_msat     INTEGER NOT NULL CHECK (amount_msat > 0),
    expires_at      INTEGER NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('open', 'paid', 'expired')),
    paid_msat       INTEGER NOT NULL DEFAULT 0 CHECK (paid_msat >= 0),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX topups_open ON topups(expires_at) WHERE state = 'open';
CREATE INDEX topups_pubkey ON topups(pubkey, created_at);
CREATE INDEX jobs_open_invoices ON jobs(invoice_expires_at) WHERE state = 'invoiced';
"""

# The agent's intake and outbox. requests: every incoming request, recorded in the same
# transaction as the claim of its event ids (exactly once in); its text and answer are opaque to
# storage and erased after the retention period (money records stay). state: new (recorded,
# nothing sent yet) -> open (a reply sent, its job goes on) -> closed | dropped (never answered).
# outbox: signed events stored before they are published, republished as the same events until
# a relay accepts them; one message (several events, e.g. a NIP-17 wrap and its self copy) per key.
# agent_state: small operator settings that survive restarts (pause, limit overrides).
_V3 = """
CREATE TABLE requests (
    id          TEXT PRIMARY KEY,
    sender      TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    body        TEXT,
    reply_to    TEXT NOT NULL,
    relays      TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('new', 'open', 'closed', 'dropped')),
    invoice     TEXT,
    answer      TEXT,
    answer_msat INTEGER CHECK (answer_msat >= 0),
    erased      INTEGER NOT NULL DEFAULT 0 CHECK (erased IN (0, 1)),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX requests_unfinished ON requests(created_at) WHERE state IN ('new', 'open');
CREATE INDEX requests_sender ON requests(sender, created_at);
CREATE INDEX requests_retained ON requests(created_at) WHERE erased = 0;

CREATE TABLE outbox (
    event_id    TEXT PRIMARY KEY,
    key         TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    recipient   TEXT,
    event       TEXT NOT NULL,
    relays      TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'sent')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    sent_at     INTEGER,
    UNIQUE (key, seq)
) STRICT;
CREATE INDEX outbox_pending ON outbox(created_at) WHERE state = 'pending';

CREATE TABLE agent_state (
    key     TEXT PRIMARY KEY,
    value   TEXT NOT NULL
) STRICT, WITHOUT ROWID;
"""

# Leases, for several agent processes on one database (storage.leases): the replica working a
# request, publishing an outbox event or sending a payout (lease_owner, a replica's id) and until
# when (lease_until, epoch seconds; 0 with no owner).
_V4 = """
ALTER TABLE requests ADD COLUMN lease_owner TEXT;
ALTER TABLE requests ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN lease_owner TEXT;
ALTER TABLE outbox ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payouts ADD COLUMN lease_owner TEXT;
ALTER TABLE payouts ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
"""

# Nothing on SQLite: version 5 is PostgreSQL's write-lock table (storage.postgres_migrations);
# SQLite's writers queue on its own lock.
_V5 = ""

# Where a reply must arrive (storage.outbox): the asker's own relays (their kind-10050 or
# kind-10002 list, else the relays the request came through). An event stays pending until one
# of them accepts it; '[]': any relay's acceptance is enough (the self copy, older rows).
_V6 = """
ALTER TABLE outbox ADD COLUMN deliver_to TEXT NOT NULL DEFAULT '[]';
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _V5, _V6)
LATEST = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, target: int = LATEST) -> int:
    """Apply every missing migration up to ``target``; return the resulting version. ``conn`` is
    in autocommit."""
    version = schema_version(conn)
    if version > LATEST:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this code knows ({LATEST}); "
            "upgrade the code before opening this file"
        )
    while version < target:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(conn)
            if version < target:
                for statement in _statements(MIGRATIONS[version]):
                    conn.execute(statement)
                version += 1
                conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return version


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (triggers keep their inner semicolons)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--") or not line.strip():
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
