"""Three agents with the same key on one database and two relays — a SQLite file, then a
PostgreSQL database (the session's private cluster); one of them SIGKILLed mid-job
again and again (and restarted): every request answered exactly once, the money exact, and the
survivors take over the jobs the killed one held once its leases expire.

Each round sends a few requests from fresh askers (free answers that take a while, partial quotes
paid at once by a payer watching the replies, commands) over NIP-17 and NIP-04, then kills the same
replica while its log shows it working on a job of the round (or after 5 s). Every other round it
stays down past its leases (the survivors' timers wake at the expiry and take its work over); in the
others it comes back at once (it frees the leases of its own dead run at start). Then a replica is
stopped (SIGTERM) in the middle of a long job: it gives the job back and another one finishes it (on
PostgreSQL woken at once by a notification). ``TIMMY_E2E_REPLICA_KILLS`` sets the number of kills
(default 4).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.agent_process import AgentProcess, WalletSetup
from tests.e2e.conftest import AgentFactory, HubMaker
from tests.e2e.due import Kind, Sent, all_answered
from tests.e2e.ledger_view import LedgerView
from tests.e2e.lightning import LnbitsUser, Payer, find_bolt11
from tests.e2e.money import fund_pool, until
from tests.fixtures.relay import RelayProcess

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("TIMMY_E2E_REPLICA_KILLS", "4"))
LEASE_S = 3
ALLOWANCE_MSAT = 12_000
LONG = "Please summarise: " + " ".join(["lorem"] * 600)
SETTLE_TIMEOUT_S = 120.0
JOB_LINE = re.compile(r"job ([0-9a-f]{8}) [0-9a-f]{8} (working|settled)\b")




KINDS = [
    Kind("free", "why is the sky blue? [[slow:1.2]]", "nip17", 1, "done"),
    Kind("partial", f"{LONG} [[slow:0.8]]", "nip04", 2, "done"),
    Kind("free04", "what is a relay? [[slow:1.2]]", "nip04", 1, "done"),
    Kind("command", "balance", "nip17", 1, None),
    Kind("free", "what is a lease? [[slow:1.2]]", "nip17", 1, "done"),
    Kind("partial", f"{LONG} again [[slow:0.8]]", "nip17", 2, "done"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database the three replicas share: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_cluster").new_schema(empty=True))
    return str(tmp_path / "ledger.sqlite3")


def job_steps(agent: AgentProcess) -> dict[str, set[str]]:
    """``working`` and ``settled``: the job ids (8 hex) the agent's log shows at that step."""
    steps: dict[str, set[str]] = {"working": set(), "settled": set()}
    for job_id, step in JOB_LINE.findall(agent.log_text()):
        steps[step].add(job_id)
    return steps


async def victim_mid_job(victim: AgentProcess, before: set[str],
                         timeout_s: float = 5.0) -> None:
    """Return once ``victim`` works on a job not in ``before`` that it has not settled (its log
    says so), or after ``timeout_s`` (the other replicas may have taken every request of the
    round)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        steps = job_steps(victim)
        if steps["working"] - steps["settled"] - before:
            return
        await asyncio.sleep(0.05)


async def test_replicas_one_killed_mid_job_again_and_again(
        agent_factory: AgentFactory, shared_ledger: str, e2e_relays: list[RelayProcess],
        hubs: HubMaker,
        agent_lnbits: Callable[[], tuple[WalletSetup, LnbitsUser]],
        lnbits_user: Callable[..., LnbitsUser]) -> None:
    rng = random.Random(int(os.environ.get("TIMMY_E2E_SEED", "0")) or None)
    relays = [r.url for r in e2e_relays]
    setup, agent_wallet = agent_lnbits()
    limits = {"daily_free_msat": ALLOWANCE_MSAT}
    service = {"concurrency": 4, "work_timeout_s": 20, "lease_s": LEASE_S, "stop_grace_s": 1}
    victim = agent_factory(relays, setup, db=shared_ledger, limits=limits, service=service)
    survivors = [agent_factory(relays, setup, keys=victim.keys, db=shared_ledger,
                               limits=limits, service=service) for _ in range(2)]
    await fund_pool(shared_ledger, 2_000_000, "e2e:replicas")
    view = LedgerView(shared_ledger)
    hub = await hubs(relays)
    askers = await hub.new_askers(victim.pubkey_hex, KILLS * len(KINDS))
    payer = Payer(lnbits_user("payer", 10_000), askers)
    payer.start()

    sent: list[Sent] = []
    next_asker = iter(askers)
    try:
        for kill in range(KILLS):
            before = job_steps(victim)["working"]
            for kind in KINDS:
                asker = next(next_asker)
                sent.append(Sent(asker, kind, await asker.send(kind.text, kind.protocol)))
            await victim_mid_job(victim, before)
            await asyncio.sleep(rng.uniform(0.0, 0.4))  # the work takes 0.8-1.2 s
            victim.kill()
            if kill % 2 == 0:  # down past its leases: the survivors must take its jobs over
                await asyncio.sleep(LEASE_S + 3.0)
            victim.start()

        await until(lambda: all_answered(sent, view), "every request answered", SETTLE_TIMEOUT_S)
        await asyncio.sleep(3.0)  # room for a duplicate to show itself
    finally:
        await payer.stop()

    assert victim.kills == KILLS and victim.starts == KILLS + 1
    for s in sent:  # exactly once, whichever replica recorded, worked or published it
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

    # the survivors took over jobs the victim was working when it was killed
    killed = job_steps(victim)
    saved = set().union(*(job_steps(s)["settled"] for s in survivors))
    taken_over = (killed["working"] - killed["settled"]) & saved
    spread = [len(job_steps(a)["settled"]) for a in (victim, *survivors)]
    print(f"\n{KILLS} kills; jobs settled per replica (victim first): {spread}; "
          f"taken over from the victim: {len(taken_over)}")
    assert taken_over, "no job the killed replica was working was finished by a survivor"

    # money: per job, and the ledger against the agent's wallet
    for s in sent:
        if s.kind.final_state is None:
            continue
        job = view.job(s.request_id)
        assert job is not None and job["state"] == s.kind.final_state
        if s.kind.name.startswith("free"):
            assert job["serve"] == "free" and job["absorbed_msat"] == job["actual_msat"] > 0
        else:
            paid = int(job["paid_msat"])
            quote = s.asker.replies_to(s.request_id)[0].text
            assert paid == payer.paid[find_bolt11(quote) or ""]
            charge = max(0, int(job["actual_msat"]) - ALLOWANCE_MSAT)
            assert job["charged_msat"] == charge
            assert job["refund_msat"] + view.balance(s.asker.pubkey) == paid - charge
    received = -view.posted("lightning_in")
    assert received == sum(payer.paid.values()), "payments in the ledger ≠ payments made"
    assert await agent_wallet.balance_msat() == received - view.posted("payouts")

    # a replica stopped (SIGTERM) in the middle of a job gives it back and another finishes it:
    # on PostgreSQL woken at once by a notification, on SQLite by its reconcile
    asker = await hub.new_asker(victim.pubkey_hex)
    parked = await asker.send("a long one, please [[slow:4]]", "nip17")
    replicas = [victim, *survivors]
    working: list[AgentProcess] = []

    def started() -> bool:
        working[:] = [a for a in replicas if parked[:8] in job_steps(a)["working"]]
        return bool(working)

    await until(started, "the long job started", 30.0)
    stopping = working[0]
    stopping.stop()
    await asker.exactly(parked, 1, timeout=60.0)
    others = [a for a in replicas if a is not stopping]
    assert parked[:8] not in job_steps(stopping)["settled"]
    assert any(parked[:8] in job_steps(a)["settled"] for a in others)
    if shared_ledger.startswith("postgresql://"):
        assert any("work given back by another replica" in a.log_text() for a in others)
    victim.ledger_check()
