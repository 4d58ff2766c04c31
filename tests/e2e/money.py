"""Expected money, computed from outside the agent, and bounded waits on the ledger.

What a job must cost comes from the AI test server's own records (the messages the agent sent
and the tokens the server answered with), priced with the configured prices: so a test asserts
the exact msat the ledger must show without trusting the agent's arithmetic.

``fund_pool(location, msat, key)`` is an operator top-up of an agent's pool, written to its ledger
from this process (the ledger serializes writers across processes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.work import Pricing
from storage import Database, Ledger, Limits
from tests.e2e.ledger_view import LedgerView, Row
from tests.fixtures.ai_server import AiTestServer, prompt_tokens

WAIT_S = 20.0


def whole_sats_up(msat: int) -> int:
    """What an invoice for ``msat`` asks: whole sats, rounded up (in msat)."""
    return -(-msat // 1000) * 1000


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    max_tokens: int


def usage_of(ai_server: AiTestServer, scenario: str, marker: str) -> Usage:
    """The tokens of the one chat request whose question contains ``marker``."""
    found = []
    for record in ai_server.scenario_records(scenario):
        if not record.path.endswith("/chat/completions") or not isinstance(record.body, dict):
            continue
        messages = record.body.get("messages", [])
        if messages and marker in str(messages[-1].get("content", "")):
            found.append(record)
    assert len(found) == 1, f"{len(found)} chat requests carry {marker!r} (one expected)"
    record = found[0]
    assert isinstance(record.body, dict) and record.behaviour is not None
    max_tokens = int(record.body.get("max_completion_tokens") or record.body["max_tokens"])
    return Usage(prompt_tokens(record.body["messages"]),
                 min(record.behaviour.answer_tokens, max_tokens), max_tokens)


def cost(pricing: Mapping[str, int], usage: Usage) -> tuple[int, int]:
    """``(estimate_msat, actual_msat)`` of ``usage``: the quote caps the answer at
    ``max_tokens``; the actual price counts the tokens the server answered with."""
    p = Pricing(**pricing)
    return (p.price_msat(usage.prompt_tokens, usage.max_tokens),
            p.price_msat(usage.prompt_tokens, usage.completion_tokens))


async def until(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


async def job_in(view: LedgerView, job_id: str, *states: str,
                 timeout: float = WAIT_S) -> Row:
    """The job once its state is one of ``states``."""
    last: list[Row | None] = [None]

    def reached() -> bool:
        last[0] = view.job(job_id)
        return last[0] is not None and str(last[0]["state"]) in states

    try:
        await until(reached, f"job {job_id[:8]} in {states}", timeout)
    except AssertionError:
        state = last[0]["state"] if last[0] else "(no job)"
        raise AssertionError(f"job {job_id[:8]} is {state}, not {states}, after {timeout} s"
                             ) from None
    row = last[0]
    assert row is not None
    return row


async def fund_pool(location: Path | str, amount_msat: int, key: str) -> None:
    """An operator top-up of the pool of the ledger at ``location`` (a path or a URL),
    idempotent by ``key``."""
    db = await Database.open(location)
    try:
        await Ledger(db, Limits(daily_free_msat=0, daily_free_jobs=0)).credit_pool(
            amount_msat, key, source="operator")
    finally:
        await db.close()
