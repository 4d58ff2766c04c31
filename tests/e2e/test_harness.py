"""The end-to-end harness proves itself against the real components, without the agent.

Where the agent would be, the echo stand-in (``tests/e2e/echo_agent.py``) runs as its own
process through :class:`AgentProcess`, with our own relay pool and inbox: so starting, the ready
line, SIGTERM, SIGKILL and restart, the askers (nostr-sdk) in both protocols, exactly-once
counting, dated wraps, malformed DMs, LNbits payments and the ledger readers are all checked
before any scenario relies on them.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bot.nostr import nip04, nip17
from bot.nostr.errors import NostrError
from bot.nostr.event import Event
from bot.nostr.nip65 import parse_dm_relays
from bot.relays import RelayPool
from bot.relays.config import RelayConfig
from storage import Database
from tests.e2e.agent_process import AgentConfig, AgentError, AgentProcess, RelayEntry, dev_wallet
from tests.e2e.askers import Malformed, NoReply
from tests.e2e.conftest import AgentFactory, HubMaker
from tests.e2e.ledger_view import MONEY_TABLES, LedgerView, changed_tables
from tests.e2e.lightning import LnbitsUser, find_bolt11, require_bolt11, sats_mentioned
from tests.e2e.money import fund_pool
from tests.fixtures.ai_server import AiTestServer, marker_behaviour
from tests.fixtures.relay import RelayProcess

ECHO = [sys.executable, "-m", "tests.e2e.echo_agent"]


@pytest.fixture(scope="module")
def echo(agent_factory: AgentFactory, e2e_relays: list[RelayProcess]) -> AgentProcess:
    return agent_factory([e2e_relays[0].url, e2e_relays[1].url], command=ECHO)


# -- the AI test server's markers -------------------------------------------------------


def test_markers_choose_the_behaviour() -> None:
    assert marker_behaviour("plain question") == (None, None)
    fail, _ = marker_behaviour("why? [[fail]]")
    assert fail is not None and fail.kind == "status" and fail.status == 400
    stall, _ = marker_behaviour("[[stall]] hold on")
    assert stall is not None and stall.kind == "stall"
    slow, _ = marker_behaviour("[[slow:0.5]] and [[tokens:3]]")
    assert slow is not None and slow.pause_s == 0.5 and slow.answer_tokens == 3
    default_slow, _ = marker_behaviour("[[slow]]")
    assert default_slow is not None and default_slow.pause_s == 2.0
    _, name = marker_behaviour("[[scenario:s7]] a question")
    assert name == "s7"
    status, _ = marker_behaviour("[[status:503]]")
    assert status is not None and status.status == 503


async def test_markers_work_through_http(ai_server: AiTestServer) -> None:
    fixed = ai_server.scenario()  # the fixed header a running agent sends
    marked = ai_server.scenario()

    def body(question: str) -> dict[str, object]:
        return {"model": "t", "max_tokens": 64,
                "messages": [{"role": "user", "content": "earlier [[fail]]"},
                             {"role": "assistant", "content": "sorry"},
                             {"role": "user", "content": question}]}

    async with httpx.AsyncClient(base_url=ai_server.url, headers=fixed.headers) as client:
        ok = await client.post("/chat/completions", json=body("a plain question"))
        assert ok.status_code == 200  # a marker in the history does not count
        assert ok.json()["usage"]["completion_tokens"] == 12
        failed = await client.post("/chat/completions", json=body("this one [[fail]]"))
        assert failed.status_code == 400
        short = await client.post("/chat/completions", json=body("short [[tokens:3]]"))
        assert short.json()["usage"]["completion_tokens"] == 3
        moved = await client.post("/chat/completions",
                                  json=body(f"[[scenario:{marked.name}]] [[tokens:5]]"))
        assert moved.json()["usage"]["completion_tokens"] == 5
    assert len(fixed.chat_requests()) == 3
    assert len(marked.chat_requests()) == 1


# -- the agent process and the askers, with the echo stand-in --------------------------


async def test_askers_both_protocols_exactly_once(echo: AgentProcess, hubs: HubMaker,
                                                  e2e_relays: list[RelayProcess]) -> None:
    assert echo.running and echo.ready_line.endswith("on 2 relays")
    hub = await hubs([r.url for r in e2e_relays])  # reads both relays: the echo writes both
    asker = await hub.new_asker(echo.pubkey_hex)
    rid17 = await asker.send("hello over nip17 ⚡")
    reply = await asker.exactly_one_reply(0)
    assert reply.protocol == "nip17" and reply.text == "echo: hello over nip17 ⚡"
    assert reply.tag_values("e") == [rid17]
    assert len(reply.wrap_ids) == 1  # seen on two relays, one wrap
    assert reply.relays == {r.url for r in e2e_relays}

    rid04 = await asker.send("hello over nip04", "nip04")
    reply = await asker.exactly_one_reply(1)
    assert reply.protocol == "nip04" and reply.text == "echo: hello over nip04"
    assert reply.tag_values("e") == [rid04] and reply.key == reply.event_id
    assert [r.id for r in asker.requests] == [rid17, rid04]
    asker.assert_clean()


async def test_many_askers_one_subscription(echo: AgentProcess, hubs: HubMaker,
                                            e2e_relays: list[RelayProcess]) -> None:
    hub = await hubs([e2e_relays[0].url])
    askers = await hub.new_askers(echo.pubkey_hex, 20)
    for i, asker in enumerate(askers):
        await asker.send(f"question {i}", "nip17" if i % 2 else "nip04")
    for i, asker in enumerate(askers):
        reply = await asker.wait_reply(0)
        assert reply.text == f"echo: question {i}"
    assert all(len(a.replies) == 1 for a in askers)


async def test_no_reply_is_reported_clearly(echo: AgentProcess, hubs: HubMaker,
                                            e2e_relays: list[RelayProcess]) -> None:
    hub = await hubs([e2e_relays[0].url])
    asker = await hub.new_asker(echo.pubkey_hex)
    with pytest.raises(NoReply, match=r"no reply #1 within 0.3 s"):
        await asker.wait_reply(0, timeout=0.3)
    await asker.no_reply(0.2)


async def test_a_wrap_dated_two_days_back_is_a_valid_dm(echo: AgentProcess, hubs: HubMaker,
                                                        e2e_relays: list[RelayProcess]) -> None:
    hub = await hubs([e2e_relays[0].url])
    asker = await hub.new_asker(echo.pubkey_hex)
    rid = await asker.send_dated("from the past", int(time.time()) - 2 * 86_400)
    reply = await asker.exactly_one_reply(0)
    assert reply.text == "echo: from the past" and reply.tag_values("e") == [rid]


async def test_malformed_dms_are_stored_and_dropped(echo: AgentProcess, hubs: HubMaker,
                                                    e2e_relays: list[RelayProcess]) -> None:
    hub = await hubs([e2e_relays[0].url])
    asker = await hub.new_asker(echo.pubkey_hex)
    events = Malformed(asker.bot_keys, echo.pubkey_hex).all(echo.keys)
    for name, event in events.items():
        received = Event.from_json(event.to_json())
        with pytest.raises(NostrError):
            if received.kind == 4:
                nip04.decrypt(echo.keys.secret_hex, received.pubkey, received.content)
            else:
                nip17.receive(echo.keys, received)
            pytest.fail(f"{name} opened")
        assert await hub.publish_ours(event), name  # the relay takes every one of them
    await asker.send("still there?")
    assert (await asker.exactly_one_reply(0)).text == "echo: still there?"


async def test_dm_relay_list_is_published(echo: AgentProcess, hubs: HubMaker,
                                          e2e_relays: list[RelayProcess]) -> None:
    hub = await hubs([e2e_relays[0].url])
    asker = await hub.new_asker(echo.pubkey_hex)
    await asker.publish_dm_relays(["ws://127.0.0.1:9/elsewhere"])
    async with RelayPool([RelayConfig(e2e_relays[0].url)]) as pool:
        found = await pool.fetch([{"kinds": [10050], "authors": [asker.pubkey]}], timeout_s=10)
    assert [parse_dm_relays(e) for e in found] == [["ws://127.0.0.1:9/elsewhere"]]


async def test_process_stop_kill_restart(agent_factory: AgentFactory, hubs: HubMaker,
                                         e2e_relays: list[RelayProcess]) -> None:
    agent = agent_factory([e2e_relays[0].url], command=ECHO)
    hub = await hubs([e2e_relays[0].url])
    asker = await hub.new_asker(agent.pubkey_hex)
    assert agent.stop() == 0 and not agent.running
    agent.start()
    agent.kill()
    assert not agent.running and agent.kills == 1
    agent.restart()
    assert agent.running and agent.starts == 3
    await asker.send("after a crash")
    assert (await asker.wait_reply(0)).text == "echo: after a crash"
    assert agent.log_text().count("timmy: running as") == 3
    agent.stop()


def test_a_bad_start_shows_the_log(agent_factory: AgentFactory,
                                   e2e_relays: list[RelayProcess]) -> None:
    agent = agent_factory([e2e_relays[0].url], start=False,
                          command=[sys.executable, "-c", "import sys; sys.exit('boom at start')"])
    with pytest.raises(AgentError, match=r"(?s)exited with code 1 before it was ready.*boom"):
        agent.start()


def test_config_files_are_what_the_contract_says(agent_factory: AgentFactory,
                                                 e2e_relays: list[RelayProcess]) -> None:
    import tomllib

    agent = agent_factory([e2e_relays[0].url], start=False, admins=["ab" * 32],
                          service={"work_timeout_s": 3})
    doc = tomllib.loads(agent.config_path.read_text())
    assert doc["agent"]["db"] == str(agent.db_path) and doc["agent"]["admins"] == ["ab" * 32]
    assert doc["service"]["work_timeout_s"] == 3 and doc["service"]["concurrency"] == 4
    assert doc["ai"]["headers"]["X-Scenario"].startswith("s")
    assert doc["wallet"] == {"backend": "dev", "allow_dev": True}
    relays = tomllib.loads(agent.relays_path.read_text())
    assert relays == {"relay": [{"url": e2e_relays[0].url, "read": True, "write": True}]}
    assert agent.key_path.stat().st_mode & 0o777 == 0o600


# -- the ledger readers and the ledger check --------------------------------------------


async def test_ledger_view_and_check(tmp_path: Path, agent_factory: AgentFactory,
                                     e2e_relays: list[RelayProcess]) -> None:
    agent = agent_factory([e2e_relays[0].url], start=False)
    db = await Database.open(agent.db_path)
    await db.close()
    view = LedgerView(agent.db_path)
    before = view.snapshot()
    await fund_pool(agent.db_path, 21_000, "e2e:selftest")
    await fund_pool(agent.db_path, 21_000, "e2e:selftest")  # same key: once
    assert view.pool_available() == 21_000 and view.posted("operator") == -21_000
    assert changed_tables(before, view.snapshot()) == {"accounts", "transfers", "operations"}
    assert set(MONEY_TABLES) <= set(view.tables())
    assert "ok" in agent.ledger_check()
    with pytest.raises(sqlite3.OperationalError):  # the view can never write
        view.query("DELETE FROM accounts")


def test_ledger_check_fails_on_a_broken_ledger(tmp_path: Path, agent_factory: AgentFactory,
                                               e2e_relays: list[RelayProcess]) -> None:
    agent = agent_factory([e2e_relays[0].url], start=False)
    with pytest.raises(AssertionError, match="ledger check exited 2"):
        agent.ledger_check()  # no database file at all


# -- Lightning on the askers' side ------------------------------------------------------


async def test_pay_an_invoice_from_another_lnbits_wallet(
        lnbits_user: Callable[..., LnbitsUser]) -> None:
    payer = lnbits_user("payer", 1_000)
    payee = lnbits_user("payee", 0)
    bolt11, payment_hash = await payee.invoice(21, "an answer")
    reply = f"This answer costs 21 sats (the pool covers 0).\n\n{bolt11.upper()}\n\nPay it."
    assert find_bolt11(reply) == bolt11
    assert require_bolt11(reply).amount_msat == 21_000
    assert sats_mentioned(reply) == [21]
    assert await payee.invoices_made() == 1 and not await payee.is_paid(payment_hash)
    assert await payer.pay(bolt11) == payment_hash
    assert await payee.is_paid(payment_hash)
    assert await payee.balance_msat() == 21_000
    assert await payer.balance_msat() <= 979_000
    assert find_bolt11("no invoice here\nlnbc is a prefix") is None


def test_log_problems_finds_errors_and_tracebacks(tmp_path: Path,
                                                  e2e_relays: list[RelayProcess]) -> None:
    agent = AgentProcess(tmp_path / "agent", AgentConfig([RelayEntry(e2e_relays[0].url)],
                                                         "http://127.0.0.1:9/v1", dev_wallet()))
    agent.log_path.write_text(
        "2026-12-01 00:00:00,000 INFO bot.agent: fine\n"
        "2026-12-01 00:00:01,000 WARNING bot.agent.inbox: dropped (rate limited)\n"
        "2026-12-01 00:00:02,000 ERROR bot.agent.queue: work item 1 failed\n"
        "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom\n")
    assert agent.log_problems() == [
        "2026-12-01 00:00:02,000 ERROR bot.agent.queue: work item 1 failed",
        "Traceback (most recent call last):"]
