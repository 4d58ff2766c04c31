"""``timmy run --http-port`` (the container's command): the real agent process serves the pool
page, ``/metrics`` and ``/healthz`` on that port, and stops cleanly with it."""

from __future__ import annotations

import sys

import httpx

from bot.relays.local import free_port
from tests.e2e.conftest import AgentFactory
from tests.fixtures.relay import RelayProcess


def test_run_serves_the_status_port(agent_factory: AgentFactory,
                                    e2e_relays: list[RelayProcess]) -> None:
    port = free_port()
    agent = agent_factory([e2e_relays[0].url],
                          command=[sys.executable, "-m", "bot", "run", "--http-port", str(port)])
    base = f"http://127.0.0.1:{port}"
    health = httpx.get(base + "/healthz", timeout=10)
    assert health.status_code == 200, health.text
    assert health.json() == {"ok": True, "relays": 1, "wallet": True, "database": True}
    page = httpx.get(base + "/", timeout=10)
    assert page.status_code == 200 and agent.keys.npub in page.text
    metrics = httpx.get(base + "/metrics", timeout=10)
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert f'timmy_relay_connected{{url="{e2e_relays[0].url}"}} 1.0' in metrics.text
    assert 'timmy_requests_in_total{protocol="nip17"} 0.0' in metrics.text
    agent.stop()
    try:
        httpx.get(base + "/healthz", timeout=2)
    except httpx.ConnectError:
        return
    raise AssertionError("the status port still answers after the agent stopped")
