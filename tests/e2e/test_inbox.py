"""What reaches the agent's inbox besides plain questions: broken DMs, oversized ones, and gift
wraps dated two days back (live, and while the agent was down). Also: SIGTERM stops it with
exit code 0 and nothing lost.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.e2e.agent_process import AgentProcess
from tests.e2e.askers import Malformed, Protocol
from tests.e2e.conftest import AgentFactory, HubMaker
from tests.e2e.ledger_view import MONEY_TABLES, LedgerView
from tests.e2e.money import fund_pool, job_in
from tests.fixtures.relay import RelayProcess

TWO_DAYS_S = 2 * 86_400


@pytest.fixture(scope="module")
def relay(e2e_relays: list[RelayProcess]) -> str:
    return e2e_relays[1].url


@pytest.fixture(scope="module")
def agent(agent_factory: AgentFactory, relay: str) -> AgentProcess:
    started = agent_factory([relay])
    asyncio.run(fund_pool(started.db_path, 100_000, "e2e:inbox"))
    return started


async def test_malformed_dms_get_no_reply_and_change_nothing(agent: AgentProcess, relay: str,
                                                             hubs: HubMaker) -> None:
    view = LedgerView(agent.db_path)
    hub = await hubs([relay])
    asker = await hub.new_asker(agent.pubkey_hex)
    before = view.snapshot(MONEY_TABLES)
    requests_before = view.query("SELECT COUNT(*) AS n FROM requests")[0]["n"]
    for event in Malformed(asker.bot_keys, agent.pubkey_hex).all(agent.keys).values():
        await hub.publish_ours(event)
    rid = await asker.send("help")  # the agent keeps serving
    await asker.exactly(rid, settle_s=2.0)
    assert len(asker.replies) == 1, f"replies to malformed DMs: {asker.replies[1:]}"
    asker.assert_clean()
    assert view.snapshot(MONEY_TABLES) == before
    assert view.query("SELECT COUNT(*) AS n FROM requests")[0]["n"] == requests_before + 1
    assert agent.running
    agent.ledger_check()


@pytest.mark.parametrize("protocol", ["nip17", "nip04"])
async def test_oversized_dm_gets_no_reply(agent: AgentProcess, relay: str, hubs: HubMaker,
                                          protocol: Protocol) -> None:
    view = LedgerView(agent.db_path)
    hub = await hubs([relay])
    asker = await hub.new_asker(agent.pubkey_hex)
    before = view.snapshot(MONEY_TABLES)
    await asker.send("why? " + "x" * 10_000, protocol)
    await asker.no_reply(3.0)
    assert view.snapshot(MONEY_TABLES) == before
    rid = await asker.send("still there?")
    await asker.exactly(rid)


async def test_wrap_dated_two_days_back_is_answered_once(agent: AgentProcess, relay: str,
                                                         hubs: HubMaker) -> None:
    view = LedgerView(agent.db_path)
    hub = await hubs([relay])
    asker = await hub.new_asker(agent.pubkey_hex)
    rid = await asker.send_dated("a question from two days ago", int(time.time()) - TWO_DAYS_S)
    [reply] = await asker.exactly(rid, settle_s=2.0)
    assert reply.text.startswith("the answer is")
    await job_in(view, rid, "done")
    agent.ledger_check()


async def test_sent_while_down_dated_two_days_back(agent: AgentProcess, relay: str,
                                                   hubs: HubMaker) -> None:
    """Stopped (SIGTERM: exit 0), a DM dated two days back arrives, started: answered once."""
    view = LedgerView(agent.db_path)
    hub = await hubs([relay])
    asker = await hub.new_asker(agent.pubkey_hex)
    assert agent.stop() == 0
    old = await asker.send_dated("asked while you slept", int(time.time()) - TWO_DAYS_S + 60)
    fresh = await asker.send("and this one, also while you slept", "nip04")
    agent.start()
    [reply] = await asker.exactly(old, timeout=30)
    [reply04] = await asker.exactly(fresh, settle_s=2.0)
    assert reply.protocol == "nip17" and reply04.protocol == "nip04"
    await job_in(view, old, "done")
    await job_in(view, fresh, "done")
    agent.restart()  # a second restart answers nothing again
    await asyncio.sleep(3.0)
    assert len(asker.replies) == 2
    agent.ledger_check()
