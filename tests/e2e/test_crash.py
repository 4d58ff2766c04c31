"""SIGKILL of the agent at random points, many times, across every job state: after the last
restart every request has exactly its replies, every NIP-17 reply is one event (republished,
never re-encrypted), and the money is exact — in the ledger and in the agent's LNbits wallet.

The workload cycles through every kind of request from fresh askers (one request each): free
answers that take a while (``running``), partial quotes paid at once by a payer watching the
replies (``quoted``/``invoiced``/``paid``/``running``/``done``), paid work that fails (``failed``,
refund pending) and commands. Between kills the agent runs a random 0–1.2 s: long enough to take
requests in, short enough to be killed inside them. Payments made while the agent is down are
found after a restart. The job states seen right after each kill are printed (the coverage).

``TIMMY_E2E_KILLS`` sets the number of kills (default 30).
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
from collections.abc import Callable

import pytest

from tests.e2e.agent_process import AgentProcess, WalletSetup
from tests.e2e.conftest import AgentFactory, HubMaker
from tests.e2e.due import Kind, Sent, all_answered
from tests.e2e.ledger_view import LedgerView
from tests.e2e.lightning import LnbitsUser, Payer, find_bolt11
from tests.e2e.money import fund_pool, until
from tests.fixtures.relay import RelayProcess

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("TIMMY_E2E_KILLS", "30"))
REQUESTS_PER_RUN = 2
ALLOWANCE_MSAT = 12_000
LONG = "Please summarise: " + " ".join(["lorem"] * 600)
SETTLE_TIMEOUT_S = 120.0




KINDS = [
    Kind("free", "why is the sky blue? [[slow:0.6]]", "nip17", 1, "done"),
    Kind("partial", f"{LONG} [[slow:0.4]]", "nip04", 2, "done"),
    Kind("command", "balance", "nip17", 1, None),
    Kind("failing", f"{LONG} [[fail]]", "nip17", 2, "failed"),
    Kind("free04", "what is a relay? [[slow:0.3]]", "nip04", 1, "done"),
]


def states_now(view: LedgerView) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    for job in view.jobs():
        seen[f"job:{job['state']}"] += 1
        if job["refund_state"] not in ("none", None):
            seen[f"refund:{job['refund_state']}"] += 1
    for row in view.query("SELECT state FROM requests"):
        seen[f"request:{row['state']}"] += 1
    for row in view.query("SELECT state FROM outbox"):
        seen[f"outbox:{row['state']}"] += 1
    return seen


async def test_sigkill_anywhere_then_exactly_once(
        agent_factory: AgentFactory, e2e_relays: list[RelayProcess], hubs: HubMaker,
        agent_lnbits: Callable[[], tuple[WalletSetup, LnbitsUser]],
        lnbits_user: Callable[..., LnbitsUser]) -> None:
    rng = random.Random(int(os.environ.get("TIMMY_E2E_SEED", "0")) or None)
    relay = e2e_relays[0].url
    setup, agent_wallet = agent_lnbits()
    agent: AgentProcess = agent_factory([relay], setup,
                                        limits={"daily_free_msat": ALLOWANCE_MSAT},
                                        service={"concurrency": 4, "work_timeout_s": 20})
    await fund_pool(agent.db_path, 2_000_000, "e2e:crash")
    view = LedgerView(agent.db_path)
    hub = await hubs([relay])
    askers = await hub.new_askers(agent.pubkey_hex, KILLS * REQUESTS_PER_RUN + 4)
    payer = Payer(lnbits_user("payer", 10_000), askers)
    payer.start()

    sent: list[Sent] = []
    coverage: list[collections.Counter[str]] = []
    next_asker = iter(askers)
    try:
        for kill in range(KILLS):
            for _ in range(REQUESTS_PER_RUN):
                kind = KINDS[len(sent) % len(KINDS)]
                asker = next(next_asker)
                sent.append(Sent(asker, kind, await asker.send(kind.text, kind.protocol)))
            await asyncio.sleep(rng.uniform(0.0, 1.2))
            agent.kill()
            coverage.append(states_now(view))
            if kill < KILLS - 1:
                agent.start()
        agent.start()

        # after the last restart: every request reaches its end
        await until(lambda: all_answered(sent, view),
                    "every request answered after the last restart", SETTLE_TIMEOUT_S)
        await asyncio.sleep(3.0)  # room for a duplicate to show itself
    finally:
        await payer.stop()

    seen = sum(coverage, collections.Counter())
    print(f"\n{KILLS} kills; states seen right after the kills: {dict(sorted(seen.items()))}")
    assert agent.kills == KILLS and agent.starts == KILLS + 1

    for s in sent:
        replies = s.asker.replies_to(s.request_id)
        assert len(replies) == s.kind.replies, (
            f"{s.kind.name} request {s.request_id[:8]}: {len(replies)} replies, "
            f"{s.kind.replies} due: {[r.text[:60] for r in replies]}")
        assert all(r.protocol == s.kind.protocol for r in replies)
        for reply in replies:
            if reply.protocol == "nip17":
                assert len(reply.wrap_ids) == 1, "a reply re-encrypted into a second wrap"
        s.asker.assert_clean()
        told = s.asker.unthreaded()
        assert len(told) <= 1, f"told more than once: {[r.text[:60] for r in told]}"

    # money: per job, and the ledger against the wallet
    for s in sent:
        if s.kind.final_state is None:
            continue
        job = view.job(s.request_id)
        assert job is not None and job["state"] == s.kind.final_state
        if s.kind.name.startswith("free"):
            assert job["serve"] == "free" and job["absorbed_msat"] == job["actual_msat"] > 0
        elif s.kind.name == "partial":
            paid = int(job["paid_msat"])
            assert paid == payer.paid[find_bolt11(s.asker.replies_to(s.request_id)[0].text)
                                      or ""]
            charge = max(0, int(job["actual_msat"]) - ALLOWANCE_MSAT)
            assert job["charged_msat"] == charge
            assert job["refund_msat"] + view.balance(s.asker.pubkey) == paid - charge
        else:  # failing: the whole payment owed back
            assert job["refund_msat"] == job["paid_msat"] > 0 and not job["charged_msat"]
            assert job["refund_state"] == "pending"
    received = -view.posted("lightning_in")
    assert received == sum(payer.paid.values()), "payments in the ledger ≠ payments made"
    assert await agent_wallet.balance_msat() == received - view.posted("payouts")
    assert coverage and any(c["job:running"] for c in coverage), "no kill while working"
    agent.ledger_check()
