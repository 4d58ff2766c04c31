"""Relays failing under the agent, and replies routed to where the asker reads.

- A relay killed and restarted while a job works: the job is not lost, the asker (reading both
  relays) gets exactly one reply — one event, on every relay that has it.
- Both relays down when the reply is ready: it waits in the outbox and goes out once they are
  back, as the same event.
- An asker whose kind-10050 DM relays (NIP-17) or kind-10002 read relays (NIP-04) name a relay
  the agent does not read still gets the reply there; when that relay is down as the reply is
  sent, the reply waits in the outbox (the agent's own relay took it: not enough) and reaches
  the asker's relay once it is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import nostr_sdk as sdk

from tests.e2e.agent_process import AgentProcess
from tests.e2e.conftest import AgentFactory, HubMaker
from tests.e2e.ledger_view import LedgerView
from tests.e2e.money import fund_pool, job_in, until
from tests.fixtures.relay import RelayFactory


async def _agent(agent_factory: AgentFactory, urls: Sequence[str]) -> AgentProcess:
    agent = agent_factory(list(urls))
    await fund_pool(agent.db_path, 100_000, "e2e:relays")
    return agent


async def test_relay_killed_mid_job(agent_factory: AgentFactory, relay_factory: RelayFactory,
                                    hubs: HubMaker) -> None:
    r1, r2 = relay_factory(), relay_factory()
    agent = await _agent(agent_factory, [r1.url, r2.url])
    view = LedgerView(agent.db_path)
    sender = await hubs([r1.url])  # the question reaches the agent through r1 only
    reader = await hubs([r1.url, r2.url])
    asker = sender.asker(agent.pubkey_hex)
    await reader.watch([asker])
    rid = await asker.send("a slow question [[slow:3]]")
    await job_in(view, rid, "running")
    r1.kill()
    await asyncio.sleep(1.0)
    r1.start()
    [reply] = await asker.exactly(rid, timeout=30, settle_s=3.0)
    assert reply.text.startswith("the answer is")
    assert len(reply.wrap_ids) == 1
    await job_in(view, rid, "done")
    asker.assert_clean()
    agent.ledger_check()


async def test_all_relays_down_when_the_reply_is_ready(
        agent_factory: AgentFactory, relay_factory: RelayFactory, hubs: HubMaker) -> None:
    r1, r2 = relay_factory(), relay_factory()
    agent = await _agent(agent_factory, [r1.url, r2.url])
    view = LedgerView(agent.db_path)
    hub = await hubs([r1.url, r2.url])
    asker = await hub.new_asker(agent.pubkey_hex)
    rid = await asker.send("answered while nobody listens [[slow:1.5]]", "nip04")
    await job_in(view, rid, "running")
    r1.kill()
    r2.kill()
    await job_in(view, rid, "done")

    def stored() -> list[str]:
        return [str(r["state"]) for r in view.query("SELECT state FROM outbox WHERE key LIKE ?",
                                                    (f"%{rid}",))]

    await until(lambda: bool(stored()), "the reply stored in the outbox")
    assert stored() == ["pending"], "the reply should wait in the outbox"
    r1.start()
    r2.start()
    [reply] = await asker.exactly(rid, timeout=45, settle_s=3.0)
    assert reply.protocol == "nip04" and reply.text.startswith("the answer is")
    assert view.query("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'")[0]["n"] == 0
    agent.ledger_check()


async def test_reply_reaches_the_asker_dm_relays(agent_factory: AgentFactory,
                                                 relay_factory: RelayFactory,
                                                 hubs: HubMaker) -> None:
    mine, elsewhere = relay_factory(), relay_factory()  # the agent never reads `elsewhere`
    agent = await _agent(agent_factory, [mine.url])
    out = await hubs([mine.url])
    inbox = await hubs([elsewhere.url])

    nip17 = out.asker(agent.pubkey_hex)
    await nip17.publish_dm_relays([elsewhere.url])
    await inbox.watch([nip17])
    rid = await nip17.send("where do you answer me?")
    [reply] = await nip17.exactly(rid, timeout=30)
    assert elsewhere.url in reply.relays

    nip04 = out.asker(agent.pubkey_hex)
    relay_list = (sdk.EventBuilder(sdk.Kind(10002), "")
                  .tags([sdk.Tag.parse(["r", elsewhere.url, "read"])]).finalize(nip04.keys))
    await out.publish(relay_list)
    await inbox.watch([nip04])
    rid04 = await nip04.send("and over nip04?", "nip04")
    [reply04] = await nip04.exactly(rid04, timeout=30)
    assert elsewhere.url in reply04.relays

    # the asker's DM relay is down when the reply is ready: the agent's own relay taking it is
    # not enough; it stays pending and reaches the asker's relay once that is back
    late = relay_factory()
    away = out.asker(agent.pubkey_hex)
    await away.publish_dm_relays([late.url])
    late.kill()
    view = LedgerView(agent.db_path)
    rid_late = await away.send("still there when my relay is back?")

    def outbox_row() -> dict[str, object]:
        rows = view.query("SELECT state, attempts, deliver_to FROM outbox WHERE key LIKE ?"
                          " ORDER BY seq", (f"%{rid_late}",))
        return dict(rows[0]) if rows else {}

    await until(lambda: int(str(outbox_row().get("attempts", 0))) >= 1,
                "the reply tried on the asker's relay, in vain", timeout=30)
    assert outbox_row()["state"] == "pending"
    assert outbox_row()["deliver_to"] == f'["{late.url}"]'
    late.start()
    back = await hubs([late.url])
    await back.watch([away])
    [reply_late] = await away.exactly(rid_late, timeout=45)
    assert reply_late.relays == {late.url}
    await until(lambda: outbox_row().get("state") == "sent", "the reply marked sent")
    agent.ledger_check()
