"""The job lifecycle table: every legal move works, every other move raises and changes nothing."""

from __future__ import annotations

import sqlite3

import pytest

from storage import Database, IllegalTransition, JobRecord, RefundState
from storage.jobs import JOB_MOVES, REFUND_MOVES, get_job, set_job


async def _insert(db: Database, job_id: str, state: str, refund_state: str) -> None:
    def run(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO jobs (id, pubkey, serve, state, estimate_msat, absorb_msat,"
            " work_amount_msat, refund_state, created_at, updated_at)"
            " VALUES (?, 'pk', 'gate', ?, 1, 0, 1, ?, 0, 0)",
            (job_id, state, refund_state))

    await db.write(run)


async def _job(db: Database, job_id: str) -> JobRecord:
    def run(conn: sqlite3.Connection) -> JobRecord:
        return get_job(conn, job_id)

    return await db.read(run)


@pytest.mark.parametrize("state", sorted(JOB_MOVES))
async def test_job_moves(db: Database, state: str) -> None:
    for target in sorted(JOB_MOVES):
        if target == state:
            continue
        job_id = f"{state}->{target}"
        await _insert(db, job_id, state, "none")

        def move(conn: sqlite3.Connection, j: str = job_id, t: str = target) -> None:
            set_job(conn, get_job(conn, j), 1, state=t)

        if target in JOB_MOVES[state]:
            await db.write(move)
            assert (await _job(db, job_id)).state == target
        else:
            with pytest.raises(IllegalTransition):
                await db.write(move)
            after = await _job(db, job_id)
            assert (after.state, after.updated_at) == (state, 0)


@pytest.mark.parametrize("refund", sorted(REFUND_MOVES))
async def test_refund_moves(db: Database, refund: str) -> None:
    for target in sorted(REFUND_MOVES):
        if target == refund:
            continue
        job_id = f"{refund}->{target}"
        await _insert(db, job_id, "done", refund)

        def move(conn: sqlite3.Connection, j: str = job_id, t: str = target) -> None:
            set_job(conn, get_job(conn, j), 1, refund_state=t)

        if target in REFUND_MOVES[refund]:
            await db.write(move)
            expected = RefundState(target)
        else:
            with pytest.raises(IllegalTransition):
                await db.write(move)
            expected = RefundState(refund)
        assert (await _job(db, job_id)).refund_state is expected


def test_terminal_states() -> None:
    terminal = {s for s, moves in JOB_MOVES.items() if not moves}
    assert terminal == {"done", "failed", "expired", "cancelled"}
    assert {s for s, moves in REFUND_MOVES.items() if not moves} == {"paid", "credited"}
