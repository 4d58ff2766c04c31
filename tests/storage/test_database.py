"""Opening, pragmas, migrations, and the transfer primitives' constraints."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from pathlib import Path

import pytest

from storage import (
    Database,
    DatabaseClosed,
    IdempotencyConflict,
    IllegalTransition,
    InsufficientFunds,
    SchemaTooNew,
    StorageFailure,
    postgres_migrations,
)
from storage.accounts import (
    POOL,
    REVENUE,
    SUBSIDY,
    ZAPS_IN,
    Meta,
    ask_resolve,
    resolve,
    transfer,
    transfer_id,
)
from storage.location import is_postgres_url
from storage.migrations import LATEST
from storage.postgres import redact
from storage.postgres_pipeline import MAX_PREPARED
from storage.sql import Connection
from tests.fixtures.postgres import PostgresCluster
from tests.storage.support import assert_invariants, raw


async def test_open_sets_durability_and_migrates(db_location: str) -> None:
    db = await Database.open(db_location)

    def settings(conn: Connection) -> tuple[object, ...]:
        if db.engine == "sqlite":
            return tuple(conn.execute(f"PRAGMA {p}").fetchone()[0]
                         for p in ("journal_mode", "synchronous", "busy_timeout"))
        return tuple(conn.execute("SHOW synchronous_commit").fetchone())

    assert await db.write(settings) == (("wal", 2, 30_000) if db.engine == "sqlite" else ("on",))
    assert await db.schema_version() == LATEST
    await db.close()
    await db.close()  # idempotent
    db = await Database.open(db_location)  # migrations are idempotent
    assert await db.schema_version() == LATEST
    await db.close()
    with pytest.raises(DatabaseClosed):
        await db.read(settings)


def test_both_engines_know_the_same_versions() -> None:
    assert postgres_migrations.LATEST == LATEST


async def test_concurrent_first_opens_migrate_once(empty_location: str) -> None:
    dbs = await asyncio.gather(*(Database.open(empty_location) for _ in range(4)))
    for db in dbs:
        await assert_invariants(db)
        await db.close()


async def test_newer_schema_is_refused(empty_location: str) -> None:
    postgres = is_postgres_url(empty_location)
    with raw(empty_location) as conn:
        if postgres:
            conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                         " applied_at TIMESTAMPTZ NOT NULL)")
            conn.execute("INSERT INTO schema_version VALUES (?, now())", (LATEST + 1,))
        else:
            conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    with pytest.raises(SchemaTooNew, match="newer"):
        await Database.open(empty_location)
    with raw(empty_location) as conn:  # untouched
        tables = ("SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema()" if postgres
                  else "SELECT COUNT(*) FROM sqlite_master")
        assert conn.execute(tables).fetchone()[0] == (1 if postgres else 0)


async def test_unusable_file_is_a_storage_failure(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageFailure):
        await Database.open(bad)


async def test_two_phase_transfers(db: Database) -> None:
    def run(conn: Connection) -> None:
        m = Meta("t", 0)
        transfer(conn, "in", ZAPS_IN, POOL, 1_000, m)
        transfer(conn, "p1", POOL, REVENUE, 600, m, pending=True)
        p1 = transfer_id(conn, "p1")
        with pytest.raises(InsufficientFunds):  # pending counts against the balance
            transfer(conn, "p2", POOL, REVENUE, 401, m, pending=True)
        transfer(conn, "p2", POOL, REVENUE, 400, m, pending=True)
        p2 = transfer_id(conn, "p2")
        transfer(conn, "p2", POOL, REVENUE, 400, m, pending=True)  # same key: nothing new
        assert transfer_id(conn, "p2") == p2
        with pytest.raises(IdempotencyConflict):
            transfer(conn, "p2", POOL, REVENUE, 300, m, pending=True)
        with pytest.raises(IllegalTransition):
            resolve(conn, "post1", p1, 601, m)  # more than reserved
        elsewhere = ask_resolve(conn, "post1", "p2")  # asked of another transfer: by id again
        for read in elsewhere.held:
            read.load()
        resolve(conn, "post1", p1, 250, m, asked=elsewhere)
        with pytest.raises(IllegalTransition):
            resolve(conn, "post1b", p1, 100, m)  # once
        resolve(conn, "void2", p2, 0, m)
        with pytest.raises(IllegalTransition):
            resolve(conn, "void2b", p2, 0, m)

    await db.write(run)
    balances = await assert_invariants(db)
    assert (balances[POOL], balances[REVENUE], balances[ZAPS_IN]) == (750, 250, -1_000)


async def test_journal_is_append_only(db: Database) -> None:
    await db.write(lambda conn: transfer(conn, "in", ZAPS_IN, POOL, 1_000, Meta("t", 0)))
    for sql in ("UPDATE transfers SET amount_msat = 5", "DELETE FROM transfers"):

        def tamper(conn: Connection, sql: str = sql) -> None:
            conn.execute(sql)

        with pytest.raises(StorageFailure, match="append-only"):
            await db.write(tamper)
    await assert_invariants(db)


async def test_a_failing_operation_rolls_back_only_itself(db: Database) -> None:
    def good(key: str) -> Callable[[Connection], None]:
        return lambda conn: transfer(conn, key, ZAPS_IN, POOL, 10, Meta("t", 0))

    def bad(conn: Connection) -> None:
        transfer(conn, "bad-in", ZAPS_IN, POOL, 10, Meta("t", 0))
        transfer(conn, "bad-out", POOL, SUBSIDY, 10**9, Meta("t", 0))

    results = await asyncio.gather(db.write(good("a")), db.write(bad), db.write(good("b")),
                                   return_exceptions=True)
    assert isinstance(results[1], InsufficientFunds)
    assert (await assert_invariants(db))[POOL] == 20


async def test_a_database_error_rolls_back_only_its_operation(db: Database) -> None:
    """In one batch (one transaction), an operation whose statement the database rejects rolls
    back alone, however the error comes to light: at once, at the operation's next read, or
    only once it returned or raised (PostgreSQL sends statements without waiting for each).
    Its caller learns that error; its neighbours commit and each sees the ones before it."""
    def credit(key: str) -> Callable[[Connection], None]:
        return lambda conn: transfer(conn, key, ZAPS_IN, POOL, 10, Meta("t", 0))

    def overdraw(conn: Connection) -> None:  # the CHECK: nothing below zero; nothing read after
        transfer(conn, "lost-1", ZAPS_IN, POOL, 10, Meta("t", 0))
        conn.execute("UPDATE accounts SET debits_posted = debits_posted + 1000000 WHERE id = ?",
                     (POOL,))

    def tamper_then_read(conn: Connection) -> int:
        transfer(conn, "lost-2", ZAPS_IN, POOL, 10, Meta("t", 0))
        conn.execute("DELETE FROM transfers")
        return int(conn.execute("SELECT COUNT(*) FROM transfers").fetchone()[0])

    def tamper_then_raise(conn: Connection) -> None:
        transfer(conn, "lost-3", ZAPS_IN, POOL, 10, Meta("t", 0))
        conn.execute("UPDATE transfers SET amount_msat = 5")
        raise ValueError("the statement above failed first")

    def misspelt(conn: Connection) -> None:  # refused before it runs (a prepared statement)
        conn.execute("SELECT no_such_column FROM accounts").fetchone()

    def pool_credits(conn: Connection) -> int:
        return int(conn.execute("SELECT credits_posted FROM accounts WHERE id = ?",
                                (POOL,)).fetchone()[0])

    def touch_two(conn: Connection) -> int:
        return conn.execute("UPDATE accounts SET allow_negative = allow_negative"
                            " WHERE id IN (?, ?)", (POOL, SUBSIDY)).rowcount

    batches, replays = db.batches, db.replays
    results = await asyncio.gather(
        db.write(credit("a")), db.write(overdraw), db.write(credit("b")),
        db.write(pool_credits), db.write(tamper_then_read), db.write(credit("c")),
        db.write(tamper_then_raise), db.write(touch_two), db.write(misspelt),
        db.write(misspelt), db.write(pool_credits), return_exceptions=True)
    assert db.batches == batches + 1  # one transaction
    assert db.replays == replays + 1  # run again one operation at a time
    assert isinstance(results[1], StorageFailure) and "check" in str(results[1]).lower()
    assert isinstance(results[4], StorageFailure) and "append-only" in str(results[4])
    assert isinstance(results[6], StorageFailure) and "append-only" in str(results[6])
    assert all(isinstance(r, StorageFailure) and "no_such_column" in str(r)
               for r in results[8:10])
    assert (results[3], results[7], results[10]) == (20, 2, 30)
    assert (await assert_invariants(db))[POOL] == 30
    keys = await db.read(lambda conn: [k for (k,) in conn.execute(
        "SELECT key FROM transfers ORDER BY key").fetchall()])
    assert keys == ["a", "b", "c"]
    assert await db.write(pool_credits) == 30  # the writer goes on


async def test_a_batch_runs_again_when_one_of_its_operations_fails(db: Database) -> None:
    """A batch first runs all together, without savepoints; when one of its operations fails
    the transaction is rolled back whole and the batch runs again one operation at a time. An
    operation may thus run twice, but its effects commit once, and every caller's result is
    the one of the run that committed: what it would be had the operations run one by one."""
    runs: collections.Counter[str] = collections.Counter()  # test only: write functions
    # must have no effect outside their connection; counting calls shows which pass ran

    def credit(key: str) -> Callable[[Connection], int]:
        def run(conn: Connection) -> int:
            runs[key] += 1
            transfer(conn, key, ZAPS_IN, POOL, 10, Meta("t", 0))
            return transfer_id(conn, key)
        return run

    def pool_credits(conn: Connection) -> int:
        return int(conn.execute("SELECT credits_posted FROM accounts WHERE id = ?",
                                (POOL,)).fetchone()[0])

    def overspend(conn: Connection) -> None:  # moves 10 in, then raises: neither is kept
        runs["overspend"] += 1
        transfer(conn, "kept-out", ZAPS_IN, POOL, 10, Meta("t", 0))
        transfer(conn, "too-much", POOL, SUBSIDY, 10**9, Meta("t", 0))

    replays = db.replays
    assert list(await asyncio.gather(db.write(credit("alone")), db.write(pool_credits))) == [1, 10]
    assert db.replays == replays  # nothing failed: one pass
    assert runs["alone"] == 1

    results = await asyncio.gather(
        db.write(credit("a")), db.write(pool_credits), db.write(overspend),
        db.write(credit("b")), db.write(pool_credits), return_exceptions=True)
    assert db.replays == replays + 1
    assert runs["a"] == 2 and runs["overspend"] == 2  # the first pass, then one by one
    assert isinstance(results[2], InsufficientFunds)
    ids = dict(await db.read(lambda conn: conn.execute(
        "SELECT key, id FROM transfers ORDER BY id").fetchall()))
    assert list(ids) == ["alone", "a", "b"]  # each once; nothing of the failed operation
    # the ids handed back are the committed rows' (PostgreSQL's identity does not roll back:
    # the first pass's id for "a" is gone)
    assert (results[0], results[3]) == (ids["a"], ids["b"])
    assert (results[1], results[4]) == (20, 30)  # what each saw, as if run alone
    assert (await assert_invariants(db))[POOL] == 30


async def test_a_server_on_this_host_is_reached_over_its_unix_socket(
        postgres_cluster: PostgresCluster) -> None:
    """PostgreSQL only: a URL whose host is a directory (``?host=/run/postgresql``) reaches the
    server over its Unix socket, for writes, reads and notifications alike."""
    url = postgres_cluster.new_schema(unix_socket=True)
    assert redact(url) == f"postgresql://postgres@{postgres_cluster.socket_dir}:" \
        f"{postgres_cluster.port}/ledgers"
    db = await Database.open(url)
    try:
        def over_socket(conn: Connection) -> bool:  # no server address: not TCP
            return bool(conn.execute("SELECT inet_server_addr() IS NULL").fetchone()[0])

        assert await db.write(over_socket) and await db.read(over_socket)
        await db.write(lambda conn: transfer(conn, "in", ZAPS_IN, POOL, 10, Meta("t", 0)))
        assert (await assert_invariants(db))[POOL] == 10
        assert not await db.wait_notice("timmy_test", 0.01)  # the listener connects too
    finally:
        await db.close()


async def test_the_writer_reconnects_after_the_server_dropped_it(
        postgres_cluster: PostgresCluster) -> None:
    """PostgreSQL only: a SQLite file has no server to drop the connection."""
    db = await Database.open(postgres_cluster.new_schema())
    try:
        await _writes_across_a_dropped_connection(db)
    finally:
        await db.close()


async def _writes_across_a_dropped_connection(db: Database) -> None:
    await db.write(lambda conn: transfer(conn, "in", ZAPS_IN, POOL, 10, Meta("t", 0)))
    with raw(db.location) as admin:
        killed = admin.execute(  # the writer's backend: its last statement was a COMMIT
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'timmy' AND query = 'COMMIT'").fetchall()
    assert killed == [(True,)]
    with pytest.raises(StorageFailure):
        await db.write(lambda conn: transfer(conn, "lost", ZAPS_IN, POOL, 10, Meta("t", 0)))
    await db.write(lambda conn: transfer(conn, "again", ZAPS_IN, POOL, 10, Meta("t", 0)))
    assert (await assert_invariants(db))[POOL] == 20


async def test_more_distinct_statements_than_are_prepared(db: Database) -> None:
    """Past the prepared statements a connection keeps, statements still run (unprepared)."""
    count = MAX_PREPARED + 8

    def many(conn: Connection) -> list[int]:
        asked = [conn.execute(f"SELECT CAST(? AS BIGINT) + {n}", (n,)) for n in range(count)]
        return [int(cursor.fetchone()[0]) for cursor in asked]

    assert await db.write(many) == [2 * n for n in range(count)]
    assert await db.write(many) == [2 * n for n in range(count)]
