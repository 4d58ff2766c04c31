"""The agent's logs after a full paid job (quote, LNbits payment, answer, refund claimed with an
invoice): with ``--log-format json`` every line of the log is one JSON object, there is one line
per job step naming the job, and no line holds a secret (the agent's nsec or secret key in hex,
the LNbits invoice and admin keys, the model's API key) or the asker's question. The same for a
paid job through an NWC wallet (a NIP-47 service on the relay): no line holds its connection
URI's secret."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable

from tests.e2e.agent_process import WalletSetup
from tests.e2e.conftest import AgentFactory, HubMaker
from tests.e2e.ledger_view import LedgerView
from tests.e2e.lightning import LnbitsUser, require_bolt11
from tests.e2e.money import job_in
from tests.fixtures.nwc_service import NwcServiceFactory
from tests.fixtures.relay import RelayProcess

API_KEY = "sk-e2e-" + "k3y" * 10


async def test_a_paid_job_logs_no_secret(
        agent_factory: AgentFactory, e2e_relays: list[RelayProcess], hubs: HubMaker,
        agent_lnbits: Callable[[], tuple[WalletSetup, LnbitsUser]],
        lnbits_user: Callable[..., LnbitsUser]) -> None:
    wallet, _ = agent_lnbits()
    relay = e2e_relays[0].url
    agent = agent_factory(
        [relay], wallet, limits={"daily_free_msat": 0, "daily_free_jobs": 0},
        ai={"api_key_env": "TIMMY_E2E_AI_KEY"}, env={"TIMMY_E2E_AI_KEY": API_KEY},
        command=[sys.executable, "-m", "bot", "run", "--log-format", "json",
                 "--log-level", "debug"])
    payer = lnbits_user("log-payer", 50_000)
    refund_to = lnbits_user("log-refund", 0)
    hub = await hubs([relay])
    asker = await hub.new_asker(agent.pubkey_hex)
    question = "which secret word is never logged? zyzzyva"
    rid = await asker.send(question)
    [quote] = await asker.exactly(rid)
    await payer.pay(require_bolt11(quote.text).bolt11)
    await asker.exactly(rid, 2)
    view = LedgerView(agent.db_path)
    job = await job_in(view, rid, "done")
    if job["refund_msat"] >= 1000:
        invoice, _ = await refund_to.invoice(job["refund_msat"] // 1000, "refund")
        claim = await asker.send(f"refund {invoice}")
        await asker.exactly(claim)
    agent.stop()

    log = agent.log_path.read_text(encoding="utf-8")
    secrets = {
        "the agent's nsec": agent.keys.nsec,
        "the agent's secret key": agent.keys.secret_hex,
        "the LNbits invoice key": wallet.env["TIMMY_E2E_LNBITS_INVOICE_KEY"],
        "the LNbits admin key": wallet.env["TIMMY_E2E_LNBITS_ADMIN_KEY"],
        "the model's API key": API_KEY,
        "the asker's question": "zyzzyva",
    }
    for what, secret in secrets.items():
        assert secret not in log, f"{what} is in the log"
    records = []
    for line in log.splitlines():
        if line.startswith(("timmy: running as", "--- harness:")):  # plain by contract
            continue
        records.append(json.loads(line))
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    steps = [r["message"] for r in records if r["message"].startswith(f"job {rid[:8]}")]
    assert len(steps) >= 3, [r["message"] for r in records]


async def test_a_job_paid_through_nwc_logs_no_connection_secret(
        agent_factory: AgentFactory, e2e_relays: list[RelayProcess], hubs: HubMaker,
        nwc_service_factory: NwcServiceFactory,
        lnbits_user: Callable[..., LnbitsUser]) -> None:
    relay = e2e_relays[0].url
    service = await nwc_service_factory(relay)
    wallet = WalletSetup({"backend": "nwc", "nwc": {"uri_env": "TIMMY_E2E_NWC_URI"}},
                         {"TIMMY_E2E_NWC_URI": service.uri.to_uri()})
    # started from a thread: the wallet service answers the agent's start-up from this loop
    agent = await asyncio.to_thread(
        agent_factory, [relay], wallet, limits={"daily_free_msat": 0, "daily_free_jobs": 0},
        command=[sys.executable, "-m", "bot", "run", "--log-level", "debug"])
    payer = lnbits_user("nwc-log-payer", 50_000)
    hub = await hubs([relay])
    asker = await hub.new_asker(agent.pubkey_hex)
    rid = await asker.send("what does a wallet connection hold?")
    [quote] = await asker.exactly(rid)
    await payer.pay(require_bolt11(quote.text).bolt11)
    await asker.exactly(rid, 2)
    await job_in(LedgerView(agent.db_path), rid, "done")
    await asyncio.to_thread(agent.stop)

    log = agent.log_path.read_text(encoding="utf-8")
    assert service.uri.secret not in log, "the NWC connection secret is in the log"
    assert service.uri.to_uri() not in log
    assert agent.keys.nsec not in log and agent.keys.secret_hex not in log
    assert f"job {rid[:8]}" in log  # the job's steps were logged
