"""Three agents with the same key on one database and two relays — a SQLite file, then a
PostgreSQL database (the session's private cluster); one of them SIGKILLed mid-job
again and again (and restarted): every request answered exactly once, the money exact, and the
survivors take over the jobs the killed one held once its leases expire.

Each round sends a few requests from fresh askers (free answers that take a while, partial quotes
paid at once by a payer watching the replies, commands) over NIP-17 and NIP-04 on the two shared
relays, then kills the same replica mid-job. Every other round it stays down past its leases (the
survivors' timers wake at the expiry and take its work over); in the others it comes back at once
(it frees the leases of its own dead run at start), killed while its log shows it working on a
job of the round (or after 5 s: the others may have taken them all).

The killed replica also reads a third relay that the others do not: in each round where it stays
down, two slow free requests (NIP-17 and NIP-04) go there alone, so only it records and works
them; it is killed once its log shows it working both (a bound that fails the test), and the
survivors, which never saw those events, find them in the shared ledger once the leases expire,
finish them and publish the replies to the relay the requests arrived on. Every such job must be
settled by a survivor, its reply received exactly once by an asker who reads that relay alone.

Then a replica is stopped (SIGTERM) in the middle of a long job: it gives the job back and another
one finishes it (on PostgreSQL woken at once by a notification). ``TIMMY_E2E_REPLICA_KILLS`` sets
the number of kills (default 4).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.e2e.agent_process import AgentProcess, WalletSetup
from tests.e2e.conftest import AgentFactory, HubMaker
from tests.e2e.due import Kind, Sent, all_answered
from tests.e2e.ledger_view import LedgerView
from tests.e2e.lightning import LnbitsUser, Payer, find_bolt11
from tests.e2e.money import fund_pool, until
from tests.fixtures.relay import RelayFactory, RelayProcess

pytestmark = pytest.mark.slow

KILLS = int(os.environ.get("TIMMY_E2E_REPLICA_KILLS", "4"))
LEASE_S = 3
ALLOWANCE_MSAT = 12_000
LONG = "Please summarise: " + " ".join(["lorem"] * 600)
SETTLE_TIMEOUT_S = 120.0
STEP_TIMEOUT_S = 30.0
"""How long the victim may take to start its hidden jobs, and the survivors to take them over."""
JOB_LINE = re.compile(r"job ([0-9a-f]{8}) [0-9a-f]{8} (working|settled)\b")

KINDS = [
    Kind("free", "why is the sky blue? [[slow:1.2]]", "nip17", 1, "done"),
    Kind("partial", f"{LONG} [[slow:0.8]]", "nip04", 2, "done"),
    Kind("free04", "what is a relay? [[slow:1.2]]", "nip04", 1, "done"),
    Kind("command", "balance", "nip17", 1, None),
    Kind("free", "what is a lease? [[slow:1.2]]", "nip17", 1, "done"),
    Kind("partial", f"{LONG} again [[slow:0.8]]", "nip17", 2, "done"),
]
HIDDEN_KINDS = [
    Kind("free", "who hears this relay? [[slow:2]]", "nip17", 1, "done"),
    Kind("free04", "who else hears it? [[slow:2]]", "nip04", 1, "done"),
]
"""Sent on the victim's own relay alone, in each round where it stays down (work long enough
that the victim cannot finish it between its log saying so and its kill)."""


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


def worked_by(jobs: Sequence[Sent], agents: Sequence[AgentProcess]) -> Callable[[], bool]:
    """Whether the logs of ``agents`` show every one of ``jobs`` worked (by one or another)."""
    ids = {s.request_id[:8] for s in jobs}
    return lambda: ids <= set().union(*(job_steps(a)["working"] for a in agents))


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
        relay_factory: RelayFactory, hubs: HubMaker,
        agent_lnbits: Callable[[], tuple[WalletSetup, LnbitsUser]],
        lnbits_user: Callable[..., LnbitsUser]) -> None:
    rng = random.Random(int(os.environ.get("TIMMY_E2E_SEED", "0")) or None)
    relays = [r.url for r in e2e_relays]
    own_relay = relay_factory().url  # read by the victim alone
    setup, agent_wallet = agent_lnbits()
    limits = {"daily_free_msat": ALLOWANCE_MSAT}
    service = {"concurrency": 4, "work_timeout_s": 20, "lease_s": LEASE_S, "stop_grace_s": 1}
    victim = agent_factory([*relays, own_relay], setup, db=shared_ledger, limits=limits,
                           service=service)
    survivors = [agent_factory(relays, setup, keys=victim.keys, db=shared_ledger,
                               limits=limits, service=service) for _ in range(2)]
    await fund_pool(shared_ledger, 2_000_000, "e2e:replicas")
    view = LedgerView(shared_ledger)
    hub = await hubs(relays)
    askers = await hub.new_askers(victim.pubkey_hex, KILLS * len(KINDS))
    hidden_hub = await hubs([own_relay])
    stays = [kill % 2 == 0 for kill in range(KILLS)]  # down past its leases in these rounds
    hidden_askers = await hidden_hub.new_askers(victim.pubkey_hex,
                                                sum(stays) * len(HIDDEN_KINDS))
    payer = Payer(lnbits_user("payer", 10_000), askers)
    payer.start()

    sent: list[Sent] = []
    hidden: list[Sent] = []
    next_asker = iter(askers)
    try:
        for stays_down in stays:
            before = job_steps(victim)["working"]
            for kind in KINDS:
                asker = next(next_asker)
                sent.append(Sent(asker, kind, await asker.send(kind.text, kind.protocol)))
            if stays_down:  # killed working the jobs only it has seen
                round_askers = hidden_askers[len(hidden):len(hidden) + len(HIDDEN_KINDS)]
                mine = [Sent(a, kind, await a.send(kind.text, kind.protocol))
                        for a, kind in zip(round_askers, HIDDEN_KINDS, strict=True)]
                sent += mine
                hidden += mine
                await until(worked_by(mine, [victim]),
                            "the victim working the requests of its own relay", STEP_TIMEOUT_S)
                victim.kill()
                # past its leases, until the survivors hold those jobs (they saw them nowhere)
                await asyncio.sleep(LEASE_S + 3.0)
                await until(worked_by(mine, survivors),
                            "the survivors taking over the victim's hidden jobs", STEP_TIMEOUT_S)
            else:
                await victim_mid_job(victim, before)
                await asyncio.sleep(rng.uniform(0.0, 0.4))  # the work takes 0.8-1.2 s
                victim.kill()
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

    # the survivors finished every job only the victim had seen, which it was working when killed,
    # and its reply reached the asker on the relay the request came by (the asker reads no other)
    killed = job_steps(victim)
    saved = set().union(*(job_steps(s)["settled"] for s in survivors))
    taken_over = (killed["working"] - killed["settled"]) & saved
    spread = [len(job_steps(a)["settled"]) for a in (victim, *survivors)]
    print(f"\n{KILLS} kills; jobs settled per replica (victim first): {spread}; "
          f"taken over from the victim: {len(taken_over)} ({len(hidden)} only it had seen)")
    for s in hidden:
        job_id = s.request_id[:8]
        assert job_id not in killed["settled"], f"the victim finished {job_id} before its kill"
        assert job_id in saved, f"{job_id}, worked by the killed replica, not settled by another"
        assert s.asker.replies_to(s.request_id)[0].relays == {own_relay}

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
