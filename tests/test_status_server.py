"""The read-only status port (bot/agent/web.py) of a real agent on a real relay: the pool page and
``/metrics`` change after a job answered free, ``/healthz`` is 200 and turns 503 when the relay
dies, and nothing but GET/HEAD of the three paths is served; the page in a real headless
Chromium (Debian's, driven by Playwright) before and after a zap and a job."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import segno
from playwright.async_api import async_playwright

from bot.agent.agent import Agent, AgentParts
from bot.agent.demo import DEMO_LIMITS, DEMO_PRICING
from bot.agent.settings import ProfileConfig, ServiceConfig
from bot.agent.texts import sats
from bot.agent.web import StatusServer
from bot.dm_client import DmClient
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.config import RelayConfig
from bot.wallets.config import PayoutPolicy
from bot.wallets.dev import DevWallet
from bot.wallets.lnurl import encode_lnurl
from bot.work import OpenAIConfig
from bot.work.openai_compat import OpenAIBackend
from storage import Database, Ledger, Outbox, OutgoingEvent, Replica
from tests.fixtures.ai_server import AiTestServer
from tests.fixtures.relay import RelayFactory, RelayProcess

POOL_MSAT = 50_000
CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by scripts/setup


@dataclass
class Running:
    agent: Agent
    status: StatusServer
    relay: RelayProcess
    http: httpx.AsyncClient


@pytest.fixture
async def running(tmp_path: Path, relay_factory: RelayFactory,
                  ai_server: AiTestServer) -> AsyncIterator[Running]:
    relay = relay_factory()
    db = await Database.open(tmp_path / "agent.sqlite3")
    await Ledger(db, DEMO_LIMITS).credit_pool(POOL_MSAT, "test-topup", source="operator")
    scenario = ai_server.scenario()
    async with httpx.AsyncClient(timeout=10.0) as http:
        backend = OpenAIBackend(OpenAIConfig(base_url=ai_server.url, model="test", max_tokens=24,
                                             headers=scenario.headers), http)
        agent = Agent(AgentParts(
            keys=Keys.generate(), relays=[RelayConfig(relay.url)], db=db, wallet=DevWallet(),
            backend=backend, http=http, pricing=DEMO_PRICING, limits=DEMO_LIMITS,
            service=ServiceConfig(), profile=ProfileConfig(lud16="timmy@example.com"),
            admins=frozenset(), max_tokens=24, payout_policy=PayoutPolicy()))
        await agent.start()
        status = StatusServer(agent)
        await status.start()
        try:
            yield Running(agent, status, relay, http)
        finally:
            await status.stop()
            await agent.stop()
            await db.close()


def sample(metrics: str, name: str, **labels: str) -> int:
    """One sample's value from the Prometheus text (prometheus-client writes ``1.0``)."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^{re.escape(name + ('{' + inner + '}' if inner else ''))} "
                      r"([0-9.e+]+)$", metrics, re.M)
    assert found is not None, (name, labels, metrics)
    return int(float(found.group(1)))


async def test_page_and_metrics_change_after_a_job(running: Running) -> None:
    base, http = running.status.url, running.http
    page = (await http.get(base + "/")).text
    assert running.agent.parts.keys.npub in page
    assert 'id="available">50 sats<' in page and 'id="given-today">0 sats<' in page
    assert 'href="lightning:timmy@example.com"' in page and "NOT REAL MONEY" in page
    lnurl = encode_lnurl("https://example.com/.well-known/lnurlp/timmy").upper()
    qr = segno.make(f"LIGHTNING:{lnurl}", error="m")  # what a wallet scanning it reads
    assert qr.svg_inline(scale=4, title="Zap timmy@example.com") in page
    assert "<form" not in page and "<input" not in page
    before = (await http.get(base + "/metrics")).text
    assert sample(before, "timmy_pool_available_msat") == POOL_MSAT
    assert sample(before, "timmy_pool_subsidy_today_msat") == 0
    assert sample(before, "timmy_relay_connected", url=running.relay.url) == 1
    assert sample(before, "timmy_requests_in_total", protocol="nip17") == 0
    assert sample(before, "timmy_jobs_total", serve="free", outcome="answered") == 0
    assert sample(before, "timmy_work_seconds_count", result="ok") == 0
    assert sample(before, "timmy_refunds_pending") == 0

    keys = Keys.generate()
    asker = DmClient(keys, running.agent.parts.keys.public_hex,
                     RelayPool([RelayConfig(running.relay.url)], keys=keys))
    await asker.start()
    try:
        question = "a question only the asker knows"
        await asker.reply(await asker.send(question), 0, 60)
    finally:
        await asker.stop()

    after = (await http.get(base + "/metrics")).text
    given = sample(after, "timmy_pool_subsidy_today_msat")
    assert given > 0
    assert sample(after, "timmy_pool_available_msat") == POOL_MSAT - given
    assert sample(after, "timmy_requests_in_total", protocol="nip17") == 1
    assert sample(after, "timmy_jobs_total", serve="free", outcome="answered") == 1
    assert sample(after, "timmy_work_seconds_count", result="ok") == 1
    assert sample(after, "timmy_jobs_open", state="running") == 0
    page = (await http.get(base + "/")).text
    assert 'id="given-today">0 sats<' not in page and question not in page


async def test_the_outbox_backlog_counts_every_pending_event(running: Running) -> None:
    """More events pending than one batch of retries reads (1000): all of them are counted.
    They are another live replica's, so this agent leaves them alone."""
    other = Outbox(running.agent.parts.db, replica=Replica(lease_s=3600, id="elsewhere:1:ab"))
    for i in range(1001):
        assert await other.add(f"reply:{i}", [OutgoingEvent(f"event{i}", "{}")])
    metrics = (await running.http.get(running.status.url + "/metrics")).text
    assert sample(metrics, "timmy_outbox_backlog") == 1001


async def test_healthz_turns_unhealthy_when_the_relay_dies(running: Running) -> None:
    url, http = running.status.url + "/healthz", running.http
    healthy = await http.get(url)
    assert healthy.status_code == 200
    assert healthy.json() == {"ok": True, "relays": 1, "wallet": True, "database": True}
    await asyncio.to_thread(running.relay.kill)
    async with asyncio.timeout(30):
        while (sick := await http.get(url)).status_code == 200:
            await asyncio.sleep(0.1)
    assert sick.status_code == 503
    assert sick.json()["relays"] == 0 and sick.json()["ok"] is False


async def test_read_only_and_nothing_else(running: Running) -> None:
    base, http = running.status.url, running.http
    assert (await http.post(base + "/", content=b"x")).status_code == 405
    assert (await http.get(base + "/admin")).status_code == 404
    head = await http.head(base + "/metrics")
    assert head.status_code == 200 and head.content == b""


async def test_pool_page_in_chromium(running: Running, tmp_path: Path) -> None:
    """The page in a real headless browser: its figures, no input element, and the figures after
    a zap (credited to the pool as the zap intake does) and a job; screenshots of both."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run scripts/setup"
    ledger = running.agent.ledger
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM,
                                          args=["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            page = await browser.new_page()
            await page.goto(running.status.url + "/")
            assert await page.inner_text("#available") == "50 sats"
            assert await page.inner_text("#given-today") == "0 sats"
            assert "0 zaps" in await page.inner_text("#funded")
            assert await page.inner_text("#free-today") == "0"
            assert "No zaps yet" in await page.inner_text("#zaps")
            assert await page.locator("#qr svg").count() == 1  # the address's QR code
            assert running.agent.parts.keys.npub == await page.inner_text("#npub")
            assert await page.locator("form, input, textarea, select, button").count() == 0
            await page.screenshot(path=tmp_path / "before.png", full_page=True)

            zapper = Keys.generate()
            note = "for the free answers <b>!</b>"
            await ledger.credit_pool(21_000, "zap:test", zapper_pubkey=zapper.public_hex,
                                     note=note)
            keys = Keys.generate()
            asker = DmClient(keys, running.agent.parts.keys.public_hex,
                             RelayPool([RelayConfig(running.relay.url)], keys=keys))
            await asker.start()
            try:
                await asker.reply(await asker.send("what is a zap?"), 0, 60)
            finally:
                await asker.stop()

            await page.reload()
            pool = await ledger.pool_status()
            assert pool.spent_today_msat > 0
            assert await page.inner_text("#given-today") != "0 sats"
            assert "by 1 zaps from 1 zappers" in await page.inner_text("#funded")
            assert await page.inner_text("#free-today") == "1"
            zaps = await page.inner_text("#zaps")
            assert zapper.npub in zaps and "21 sats" in zaps and note in zaps  # text, not markup
            assert await page.inner_text("#available") == sats(pool.available_msat)
            await page.screenshot(path=tmp_path / "after.png", full_page=True)
        finally:
            await browser.close()
    for shot in ("before.png", "after.png"):
        assert (tmp_path / shot).read_bytes().startswith(b"\x89PNG")
