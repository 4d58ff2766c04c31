"""Fixtures of the end-to-end tests: the agent as its own process, real relays, LNbits, the AI
test server, and nostr-sdk askers.

- ``e2e_relays`` (session): two relays of our own (``RelayProcess``); most scenarios use the
  first, the dedupe and relay-restart ones both. Tests that kill a relay start their own.
- ``agent_factory`` (module): ``agent_factory(relays=..., wallet=..., **AgentConfig fields)``
  → a started :class:`AgentProcess` in its own directory, closed at the end of the module (one
  agent serves the many scenarios of a module that do not interfere: distinct askers);
  ``keys=`` and ``db=`` (a path or a ``postgresql://`` URL) start a replica of another agent
  (same key, same database).
- ``lnbits_user`` (session): ``lnbits_user(name, balance_sat)`` → a funded :class:`LnbitsUser`;
  ``agent_lnbits`` (session): ``agent_lnbits()`` → ``(WalletSetup, LnbitsUser)`` for an agent
  whose invoices the askers pay from their own LNbits wallets.
- ``hubs`` (function, async): ``await hubs(urls)`` → a started :class:`Hub` (nostr-sdk client),
  closed at the end of the test.

A failed test shows the log tail of every agent still running; a module whose agents logged an
error or a traceback fails its teardown.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.nostr.keys import Keys
from tests.e2e.agent_process import (
    LIVE,
    AgentConfig,
    AgentError,
    AgentProcess,
    RelayEntry,
    WalletSetup,
    dev_wallet,
    lnbits_wallet,
)
from tests.e2e.askers import Hub
from tests.e2e.lightning import LnbitsUser
from tests.fixtures.ai_server import AiTestServer
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer
from tests.fixtures.relay import RelayFactory, RelayProcess


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                        pytest.TestReport]:
    report = yield
    if report.failed:
        for agent in list(LIVE):
            report.sections.append((f"agent {agent.pubkey_hex[:8]} log", agent.log_tail()))
    return report


@pytest.fixture(scope="session")
def e2e_relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RelayProcess]]:
    factory = RelayFactory(tmp_path_factory.mktemp("e2e-relays"))
    try:
        yield [factory(), factory()]
    finally:
        factory.stop_all()


class AgentFactory:
    """Starts agents under one directory; closes every one at teardown."""

    def __init__(self, base: Path, ai_server: AiTestServer) -> None:
        self.base = base
        self.ai_server = ai_server
        self.agents: list[AgentProcess] = []
        self._n = itertools.count(1)

    def config(self, relays: Sequence[str | RelayEntry], wallet: WalletSetup | None = None,
               **fields: Any) -> AgentConfig:
        entries = [r if isinstance(r, RelayEntry) else RelayEntry(r) for r in relays]
        scenario = fields.pop("ai_scenario", None) or self.ai_server.scenario().name
        return AgentConfig(relays=entries, ai_url=self.ai_server.url,
                           wallet=wallet or dev_wallet(), ai_scenario=scenario, **fields)

    def __call__(self, relays: Sequence[str | RelayEntry], wallet: WalletSetup | None = None,
                 *, start: bool = True, command: Sequence[str] | None = None,
                 keys: Keys | None = None, db: Path | str | None = None,
                 **fields: Any) -> AgentProcess:
        agent = AgentProcess(self.base / f"agent{next(self._n)}",
                             self.config(relays, wallet, **fields), command=command, keys=keys,
                             db=db)
        self.agents.append(agent)
        if start:
            agent.start()
        return agent

    def close_all(self) -> None:
        """Stop every agent. The teardown fails when one does not exit 0 on SIGTERM in time, or
        logged an error or a traceback at any point (the test itself may have passed)."""
        failures: list[str] = []
        for agent in self.agents:
            if agent.running:
                try:
                    agent.stop()
                except AgentError as exc:
                    failures.append(str(exc))
                finally:
                    agent.close()
            problems = agent.log_problems()
            if problems:
                failures.append(f"{agent!r} logged {len(problems)} error line(s):\n"
                                + "\n".join(problems[:20]))
        if failures:
            raise AgentError("\n".join(failures))


@pytest.fixture(scope="module")
def agent_factory(tmp_path_factory: pytest.TempPathFactory,
                  ai_server: AiTestServer) -> Iterator[AgentFactory]:
    factory = AgentFactory(tmp_path_factory.mktemp("agents"), ai_server)
    try:
        yield factory
    finally:
        factory.close_all()


@pytest.fixture(scope="session")
def lnbits_user(lnbits_server: LnbitsServer,
                lnbits_new_wallet: Callable[..., LnbitsAccount]) -> Callable[..., LnbitsUser]:
    def make(name: str = "asker", balance_sat: int = 0) -> LnbitsUser:
        return LnbitsUser(lnbits_server.url, lnbits_new_wallet(name, balance_sat))

    return make


@pytest.fixture(scope="session")
def agent_lnbits(lnbits_user: Callable[..., LnbitsUser]
                 ) -> Callable[[], tuple[WalletSetup, LnbitsUser]]:
    def make() -> tuple[WalletSetup, LnbitsUser]:
        user = lnbits_user("agent", 0)
        setup = lnbits_wallet(user.url, user.account.inkey, user.account.adminkey)
        return setup, user

    return make


HubMaker = Callable[[Sequence[str]], Awaitable[Hub]]
"""The ``hubs`` fixture: ``await hubs(relay_urls)`` → a started hub."""


@pytest.fixture
async def hubs() -> AsyncIterator[HubMaker]:
    opened: list[Hub] = []

    async def make(urls: Sequence[str]) -> Hub:
        hub = Hub(urls)
        await hub.start()
        opened.append(hub)
        return hub

    try:
        yield make
    finally:
        for hub in opened:
            await hub.close()
