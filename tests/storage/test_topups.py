"""Top-up invoices: recorded durably, credited once per payment key, late money never lost."""

from __future__ import annotations

import pytest

from storage import (
    Database,
    IdempotencyConflict,
    IllegalTransition,
    InvalidInput,
    InvoiceKind,
    Ledger,
    OpenInvoice,
    TopupResult,
    TopupState,
    UnknownTopup,
    check,
)
from storage.migrations import LATEST
from storage.sql import Connection
from tests.storage.conftest import LIMITS
from tests.storage.support import ManualClock, assert_invariants, migrate_to, raw, state_digest

H1, H2, H3 = "a" * 64, "b" * 64, "c" * 64


async def test_a_topup_is_credited_once_per_key(ledger: Ledger, clock: ManualClock) -> None:
    record = await ledger.record_topup("alice", H1, 50_000, clock.now + 600)
    assert (record.state, record.paid_msat) == (TopupState.OPEN, 0)
    assert await ledger.record_topup("alice", H1, 50_000, clock.now + 600) == record  # repeat
    first = await ledger.confirm_topup(H1, 50_000, f"pay:{H1}")
    assert (first.result, first.pubkey, first.credited_balance_msat) == (
        TopupResult.CREDITED, "alice", 50_000)
    for _ in range(3):  # repeated deliveries of the same payment
        assert await ledger.confirm_topup(H1, 50_000, f"pay:{H1}") == first
    assert (await ledger.balance("alice")).available_msat == 50_000
    paid = await ledger.topup(H1)
    assert (paid.state, paid.paid_msat) == (TopupState.PAID, 50_000)
    assert await ledger.open_invoices() == []
    await assert_invariants(ledger.db)


async def test_overpaid_late_and_duplicate_topups_all_become_balance(
    ledger: Ledger, clock: ManualClock
) -> None:
    await ledger.record_topup("alice", H1, 10_000, clock.now + 600)
    over = await ledger.confirm_topup(H1, 12_345, f"pay:{H1}")
    assert (over.result, over.invoice_msat, over.credited_balance_msat) == (
        TopupResult.CREDITED, 10_000, 12_345)
    dup = await ledger.confirm_topup(H1, 10_000, f"zap:{H1}")  # the same hash under another key
    assert (dup.result, dup.credited_balance_msat) == (TopupResult.DUPLICATE, 10_000)

    await ledger.record_topup("bob", H2, 7_000, clock.now + 600)
    assert (await ledger.expire_topup(H2)).state is TopupState.EXPIRED
    assert (await ledger.expire_topup(H2)).state is TopupState.EXPIRED  # repeat: no-op
    assert (await ledger.balance("bob")).available_msat == 0  # an expired invoice moves nothing
    late = await ledger.confirm_topup(H2, 7_000, f"pay:{H2}")
    assert (late.result, late.credited_balance_msat) == (TopupResult.LATE, 7_000)

    await ledger.record_topup("bob", H3, 3_000, clock.now + 60)
    clock.advance(61)  # past its expiry, not yet expired by anyone
    under = await ledger.confirm_topup(H3, 1_000, f"pay:{H3}")
    assert under.result is TopupResult.LATE
    with pytest.raises(IllegalTransition):
        await ledger.expire_topup(H3)  # paid: it cannot expire any more

    assert (await ledger.balance("alice")).available_msat == 22_345
    assert (await ledger.balance("bob")).available_msat == 8_000
    assert [t.payment_hash for t in await ledger.recent_topups("bob")] == [H3, H2]
    await assert_invariants(ledger.db)


async def test_open_invoices_lists_jobs_and_topups_awaiting_payment(
    ledger: Ledger, clock: ManualClock
) -> None:
    now = clock.now
    await ledger.decide("g1", "alice", 10_000)  # gate (empty pool): quoted, no invoice yet
    await ledger.decide("g2", "bob", 10_000)
    await ledger.attach_invoice("g2", "hash-g2", 10_000, now + 300)
    await ledger.decide("g3", "bob", 10_000)
    await ledger.attach_invoice("g3", "hash-g3", 10_000, now + 100)
    await ledger.record_topup("alice", H1, 5_000, now + 200)
    await ledger.record_topup("carol", H2, 5_000, now + 400)
    assert await ledger.open_invoices() == [
        OpenInvoice("hash-g3", InvoiceKind.JOB, "bob", 10_000, now + 100, "g3"),
        OpenInvoice(H1, InvoiceKind.TOPUP, "alice", 5_000, now + 200, None),
        OpenInvoice("hash-g2", InvoiceKind.JOB, "bob", 10_000, now + 300, "g2"),
        OpenInvoice(H2, InvoiceKind.TOPUP, "carol", 5_000, now + 400, None),
    ]
    clock.advance(250)  # past expiry but not expired yet: still listed (a payment may be late)
    assert len(await ledger.open_invoices()) == 4
    await ledger.confirm_payment("hash-g2", 10_000, "pay:hash-g2")
    await ledger.expire_job("g3")
    await ledger.expire_topup(H1)
    await ledger.confirm_topup(H2, 5_000, f"pay:{H2}")
    assert await ledger.open_invoices() == []
    await assert_invariants(ledger.db)


async def test_a_payment_hash_belongs_to_one_invoice(ledger: Ledger, clock: ManualClock) -> None:
    await ledger.decide("g1", "alice", 10_000)
    await ledger.attach_invoice("g1", "hash-g1", 10_000, clock.now + 600)
    await ledger.record_topup("alice", H1, 5_000, clock.now + 600)
    await ledger.decide("g2", "alice", 10_000)
    refused = [
        (IdempotencyConflict, ledger.record_topup("alice", "hash-g1", 10_000, clock.now + 600)),
        (IdempotencyConflict, ledger.record_topup("bob", H1, 5_000, clock.now + 600)),
        (IdempotencyConflict, ledger.record_topup("alice", H1, 6_000, clock.now + 600)),
        (IdempotencyConflict, ledger.attach_invoice("g2", H1, 10_000, clock.now + 600)),
        (UnknownTopup, ledger.confirm_topup("hash-g1", 10_000, "pay:hash-g1")),
        (UnknownTopup, ledger.confirm_topup(H2, 10_000, f"pay:{H2}")),
        (UnknownTopup, ledger.expire_topup(H2)),
        (UnknownTopup, ledger.topup(H2)),
        (InvalidInput, ledger.record_topup("", H2, 5_000, clock.now + 600)),
        (InvalidInput, ledger.record_topup("alice", H2, 0, clock.now + 600)),
        (InvalidInput, ledger.record_topup("alice", H2, 5_000, 0)),
        (InvalidInput, ledger.record_topup("alice", H2, 5_000, 1.5)),  # type: ignore[arg-type]
        (InvalidInput, ledger.confirm_topup(H1, -5, f"pay:{H1}")),
        (InvalidInput, ledger.confirm_topup(H1, 5_000, "")),
        (InvalidInput, ledger.credit_balance("alice", 5_000, "k", "topup_paid")),
        (InvalidInput, ledger.recent_topups("alice", 0)),
    ]
    for error, call in refused:
        with pytest.raises(error):
            await call
    await assert_invariants(ledger.db)
    # the key of a job payment cannot be reused for a top-up payment
    await ledger.confirm_payment("hash-g1", 10_000, "pay:shared")
    with pytest.raises(IdempotencyConflict):
        await ledger.confirm_topup(H1, 5_000, "pay:shared")
    assert (await ledger.topup(H1)).state is TopupState.OPEN


async def test_bad_topup_input_leaves_the_file_unchanged(
    db_location: str, clock: ManualClock
) -> None:
    db = await Database.open(db_location)
    ledger = Ledger(db, LIMITS, clock=clock)
    await ledger.record_topup("alice", H1, 5_000, clock.now + 600)
    before = await state_digest(db)
    for call in (
        ledger.record_topup("alice", H1, 5_001, clock.now + 600),
        ledger.confirm_topup(H2, 5_000, "pay:x"),
        ledger.confirm_topup(H1, 0, "pay:x"),
    ):
        with pytest.raises((IdempotencyConflict, UnknownTopup, InvalidInput)):
            await call
    assert await state_digest(db) == before
    await db.close()


async def test_check_finds_a_tampered_topup(ledger: Ledger, clock: ManualClock) -> None:
    await ledger.record_topup("alice", H1, 5_000, clock.now + 600)
    await ledger.confirm_topup(H1, 5_000, f"pay:{H1}")
    assert (await check(ledger.db)).ok

    def tamper(conn: Connection) -> None:
        conn.execute("UPDATE topups SET paid_msat = 9000 WHERE payment_hash = ?", (H1,))

    await ledger.db.write(tamper)
    report = await check(ledger.db)
    assert any("top-ups of alice" in v for v in report.violations), report.violations


async def test_a_version_1_file_is_upgraded_and_keeps_its_jobs(
    empty_location: str, clock: ManualClock
) -> None:
    migrate_to(empty_location, 1)
    with raw(empty_location) as conn:
        conn.execute(
            "INSERT INTO jobs (id, pubkey, serve, state, estimate_msat, absorb_msat,"
            " work_amount_msat, invoice_hash, invoice_msat, invoice_expires_at, created_at,"
            " updated_at) VALUES ('old', 'alice', 'gate', 'invoiced', 9000, 0, 9000, 'hash-old',"
            " 9000, ?, 1, 1)",
            (clock.now + 600,),
        )
    db = await Database.open(empty_location)
    try:
        assert await db.schema_version() == LATEST
        ledger = Ledger(db, LIMITS, clock=clock)
        await ledger.record_topup("alice", H1, 5_000, clock.now + 900)
        assert [i.payment_hash for i in await ledger.open_invoices()] == ["hash-old", H1]
        await assert_invariants(db)
    finally:
        await db.close()
