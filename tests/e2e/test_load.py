"""Many askers at once, and floods: the pool is never over-spent, the wallet never flooded.

- 50 fresh askers ask at once while the pool holds exactly 10 answers: exactly 10 are free, the
  other 40 are quoted, each asker gets exactly one reply, the pool ends at 0 msat.
- One pubkey floods; then many fresh pubkeys flood: replies stay within the rate limit, the
  wallet makes no more invoices than the open-invoice caps allow, and other askers are still
  answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.e2e.agent_process import WalletSetup
from tests.e2e.conftest import AgentFactory, HubMaker
from tests.e2e.ledger_view import LedgerView
from tests.e2e.lightning import LnbitsUser, find_bolt11
from tests.e2e.money import fund_pool, job_in
from tests.fixtures.relay import RelayProcess

CROWD = 50
FREE_ANSWERS = 10
QUESTION = "What is the capital of France? [[tokens:64]]"
"""The same question for everyone; the answer uses the whole output cap, so each free answer
costs exactly its estimate and nothing flows back to the pool while the others are decided."""

FLOOD_SERVICE = {"rate_per_minute": 6, "burst": 3, "max_open_invoices_per_pubkey": 2,
                 "max_open_invoices": 10}


@pytest.fixture(scope="module")
def relay(e2e_relays: list[RelayProcess]) -> str:
    return e2e_relays[0].url


async def test_fifty_askers_and_a_pool_for_ten(
        agent_factory: AgentFactory, relay: str, hubs: HubMaker,
        agent_lnbits: Callable[[], tuple[WalletSetup, LnbitsUser]]) -> None:
    setup, wallet = agent_lnbits()
    agent = agent_factory([relay], setup, limits={"daily_free_msat": 50_000},
                          service={"concurrency": 8})
    view = LedgerView(agent.db_path)
    hub = await hubs([relay])

    # one probe answer gives the exact estimate of the question
    await fund_pool(agent.db_path, 50_000, "e2e:probe")
    probe = await hub.new_asker(agent.pubkey_hex)
    probe_id = await probe.send(QUESTION)
    await probe.exactly(probe_id)
    job = await job_in(view, probe_id, "done")
    estimate = int(job["estimate_msat"])
    assert job["serve"] == "free" and job["actual_msat"] == estimate
    top = FREE_ANSWERS * estimate - view.pool_available()
    assert top > 0
    await fund_pool(agent.db_path, top, "e2e:ten-answers")
    assert view.pool_available() == FREE_ANSWERS * estimate
    invoices_before = await wallet.invoices_made()

    askers = await hub.new_askers(agent.pubkey_hex, CROWD)
    ids = await asyncio.gather(*(a.send(QUESTION, "nip17" if i % 2 else "nip04")
                                 for i, a in enumerate(askers)))
    replies = [r[0] for r in await asyncio.gather(
        *(a.exactly(rid, timeout=60, settle_s=0) for a, rid in zip(askers, ids, strict=True)))]
    await asyncio.sleep(1.5)
    for asker, rid in zip(askers, ids, strict=True):
        assert len(asker.replies_to(rid)) == 1, f"{asker!r} got {len(asker.replies_to(rid))}"
        asker.assert_clean()

    free = [r for r in replies if find_bolt11(r.text) is None]
    quoted = [r for r in replies if find_bolt11(r.text) is not None]
    assert (len(free), len(quoted)) == (FREE_ANSWERS, CROWD - FREE_ANSWERS)
    jobs = [await job_in(view, rid, "done", "invoiced") for rid in ids]
    serves = sorted((str(j["serve"]), str(j["state"])) for j in jobs)
    assert serves == sorted([("free", "done")] * FREE_ANSWERS
                            + [("gate", "invoiced")] * (CROWD - FREE_ANSWERS))
    assert view.pool_available() == 0
    assert await wallet.invoices_made() - invoices_before == CROWD - FREE_ANSWERS
    agent.ledger_check()


async def test_floods_do_not_flood_the_wallet(
        agent_factory: AgentFactory, relay: str, hubs: HubMaker,
        agent_lnbits: Callable[[], tuple[WalletSetup, LnbitsUser]]) -> None:
    setup, wallet = agent_lnbits()
    agent = agent_factory([relay], setup, service=FLOOD_SERVICE)  # empty pool: every
    view = LedgerView(agent.db_path)                              # question needs an invoice
    hub = await hubs([relay])

    # one pubkey, 30 questions at once
    flooder = await hub.new_asker(agent.pubkey_hex)
    flood_ids = [await flooder.send(f"flood question {i}") for i in range(30)]
    await asyncio.sleep(4.0)
    answered = [rid for rid in flood_ids if flooder.replies_to(rid)]
    assert 1 <= len(answered) <= FLOOD_SERVICE["burst"] + 1, \
        f"{len(answered)} replies to a flood of 30 (burst {FLOOD_SERVICE['burst']})"
    assert all(len(flooder.replies_to(rid)) == 1 for rid in answered)
    assert len(flooder.replies) == len(answered)
    invoiced = sum(1 for r in flooder.replies if find_bolt11(r.text))
    assert invoiced <= FLOOD_SERVICE["max_open_invoices_per_pubkey"]
    assert await wallet.invoices_made() == invoiced
    dropped = view.query("SELECT COUNT(*) AS n FROM requests WHERE sender = ? AND state = "
                         "'dropped'", (flooder.pubkey,))[0]["n"]
    assert dropped == 30 - len(answered), "a flooded request must be recorded as dropped"

    # 40 fresh pubkeys, one question each
    crowd = await hub.new_askers(agent.pubkey_hex, 40)
    crowd_ids = await asyncio.gather(*(a.send("a fresh key asks") for a in crowd))
    await asyncio.gather(*(a.exactly(rid, timeout=60, settle_s=0)
                           for a, rid in zip(crowd, crowd_ids, strict=True)))
    made = await wallet.invoices_made()
    assert made <= FLOOD_SERVICE["max_open_invoices"], f"{made} invoices: a wallet flood"
    open_jobs = view.query("SELECT COUNT(*) AS n FROM jobs WHERE state = 'invoiced'")[0]["n"]
    assert open_jobs == made

    # others are still served
    other = await hub.new_asker(agent.pubkey_hex)
    for command in ("help", "pool"):
        rid = await other.send(command)
        await other.exactly(rid, settle_s=0.3)
    await asyncio.sleep(1.0)
    for asker, rid in zip(crowd, crowd_ids, strict=True):
        assert len(asker.replies_to(rid)) == 1
    assert view.pool_available() == 0 and view.transfers() == []
    agent.ledger_check()
