"""``timmy demo``: the whole agent on this machine in one command, with NOT REAL MONEY.

What runs, all started and stopped by the demo:

- a local relay (:class:`bot.relays.local.LocalRelay`) on a free port;
- the agent (:class:`bot.agent.agent.Agent`, the same one ``timmy run`` starts) with a dev
  wallet, a fresh ledger in a temporary directory, a pool funded by an operator top-up
  (``Ledger.credit_pool(..., source="operator")``), and the embedded model (or the
  OpenAI-compatible endpoint of ``--config``'s ``[ai]``);
- a scripted asker: a real Nostr client (:class:`bot.dm_client.DmClient`: its own keys and relay
  connection) that sends NIP-17 DMs through the relay and reads the agent's replies from it.

Paying: the dev wallet settles only what another dev wallet pays on the same
:class:`~bot.wallets.dev.DevNetwork`. The demo keeps the agent and the asker in one process, each
with its own dev wallet on one network, so the asker pays the agent's invoices (and the agent
pays the asker's refund invoice) by the wallets' ordinary ``pay_invoice``. Nothing outside the
process can settle a dev invoice, so no payment backdoor exists in ``timmy run``.

The steps: a free question, a question that needs a partial payment (the asker pays the dev
invoice), ``estimate``, ``balance``, a paid question whose work fails and is refunded, ``refund``
(claimed with an invoice when one is owed), then the ledger check.

The failing work is a real failure: for that one step the demo takes the model server down —
:class:`DemoModel` sends the agent's ``answer`` calls to an OpenAI-compatible backend pointed at
a local port that is bound but never listens, so the connection is refused and the real HTTP
backend reports the work ``unreachable``; the agent then fails the paid job in the ledger and
owes the asker a refund, as it would with any model outage. Quotes are always made by the
real model. Each step's conversation and the ledger after it are shown (``--plain``: plain
lines, for logs and tests; otherwise a live two-column view). Exit 0 when every step got its
answer and the ledger check passed, 1 otherwise; Ctrl-C stops everything and exits 130.
``--interactive`` keeps the agent running after the steps and prints its npub and relay URL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from bot.agent.agent import Agent, AgentParts
from bot.agent.settings import ProfileConfig, ServiceConfig
from bot.agent.texts import sats
from bot.agent.web import StatusServer
from bot.config import ConfigError, load_settings
from bot.dm_client import DmClient, DmClientError
from bot.logs import configure_logging
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.config import RelayConfig
from bot.relays.local import LocalRelay, LocalRelayError
from bot.wallets.bolt11 import decode_invoice
from bot.wallets.config import PayoutPolicy
from bot.wallets.dev import NOT_REAL_MONEY, DevNetwork, DevWallet
from bot.work import (
    Backend,
    LocalModelConfig,
    OpenAIConfig,
    Pricing,
    TokenCount,
    WorkError,
    WorkRequest,
    WorkResult,
    make_backend,
)
from bot.work.local import LocalBackend
from bot.work.openai_compat import OpenAIBackend
from storage import Database, Ledger, Limits, check

Subparsers = Any  # argparse's private _SubParsersAction

POOL_TOPUP_MSAT = 100_000
ASKER_WALLET_MSAT = 50_000
DEMO_MAX_TOKENS = 24
DEMO_PRICING = Pricing(input_msat=10, output_msat=100, fixed_fee_msat=0, per_tokens=1)
DEMO_LIMITS = Limits(daily_free_msat=5_000, daily_free_jobs=5)
DEMO_SERVICE = ServiceConfig(burst=10)  # the scripted asker sends its 8 DMs within a minute
REPLY_TIMEOUT_S = 180.0
BOLT11 = re.compile(r"\blnbcrt[0-9a-z]+\b")
MODEL_NOTE = ("The embedded model is tiny (gemma-3 270M): its answers show the plumbing, not "
              "wisdom. Point it at a real model with [ai] base_url and model in timmy.toml "
              "(Ollama, llama.cpp's server, any OpenAI-compatible endpoint): "
              "timmy demo --config timmy.toml")


# ---------------------------------------------------------------------------- what is shown


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    pool_available_msat: int
    pool_reserved_msat: int
    pool_spent_today_msat: int
    asker_balance_msat: int
    asker_refunds_msat: int
    asker_wallet_msat: int
    agent_wallet_msat: int
    jobs: tuple[str, ...]  # "serve/state" of the asker's jobs, oldest first

    def lines(self) -> list[str]:
        return [
            f"pool: {sats(self.pool_available_msat)} available, "
            f"{sats(self.pool_reserved_msat)} reserved, "
            f"{sats(self.pool_spent_today_msat)} given today",
            f"asker: balance {sats(self.asker_balance_msat)}, "
            f"refunds owed {sats(self.asker_refunds_msat)}",
            f"dev wallets: asker {sats(self.asker_wallet_msat)}, "
            f"agent {sats(self.agent_wallet_msat)}",
            f"asker's jobs: {', '.join(self.jobs) or 'none'}",
        ]


NOT_REAL_MONEY_LINE = "Test wallet: NOT REAL MONEY"  # the agent's footer, said once on screen


def _short(line: str) -> str:
    """An invoice cut to its start (the live view has no room for 300 characters)."""
    return BOLT11.sub(lambda m: m.group(0)[:28] + "…", line)


class View(Protocol):
    def note(self, text: str) -> None: ...
    def step(self, title: str) -> None: ...
    def said(self, who: str, text: str) -> None: ...
    def ledger(self, snapshot: LedgerSnapshot) -> None: ...
    def close(self) -> None: ...


class PlainView:
    """One line per thing that happens (the form the tests read)."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self._out = out

    def note(self, text: str) -> None:
        self._out(text)

    def step(self, title: str) -> None:
        self._out(f"== {title}")

    def said(self, who: str, text: str) -> None:
        for i, line in enumerate(text.splitlines() or [""]):
            self._out(f"{who + ':' if i == 0 else '':<8}{line}")

    def ledger(self, snapshot: LedgerSnapshot) -> None:
        for line in snapshot.lines():
            self._out(f"ledger: {line}")

    def close(self) -> None:
        pass


class RichView:
    """The conversation on the left, the ledger on the right, redrawn as things happen."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console()
        self._notes: list[str] = []
        self._talk: list[tuple[str, str]] = []
        self._ledger: list[str] = ["(starting)"]
        self._history: list[str] = []
        self._live = Live(self._render(), console=self._console, refresh_per_second=8,
                          vertical_overflow="visible")
        self._live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        rows: list[tuple[str, str]] = []
        for who, text in self._talk:
            lines = [_short(line) for line in text.splitlines()
                     if line.strip() and NOT_REAL_MONEY_LINE not in line]
            rows.extend((who if i == 0 else "", line) for i, line in enumerate(lines))
        room = max(10, self._console.size.height - len(self._notes) - 4)
        talk = Text()
        for who, line in rows[-room:]:
            style = {"asker": "cyan", "agent": "green", "wallet": "magenta",
                     "demo": "bold red"}.get(who, "")
            if who == "step":
                talk.append(line + "\n", style="bold yellow")
                continue
            talk.append(f"{who + ':' if who else '':<7} ", style=style)
            talk.append(line + "\n")
        ledger = Text("\n".join(self._ledger))
        if self._history:
            ledger.append("\n\nchanges:\n" + "\n".join(self._history[-12:]), style="dim")
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=3)
        grid.add_column(ratio=2)
        grid.add_row(Panel(talk, title="conversation over the relay"),
                     Panel(ledger, title=f"ledger ({NOT_REAL_MONEY})"))
        return Group(Text("\n".join(self._notes), style="bold"), grid)

    def _refresh(self) -> None:
        self._live.update(self._render())

    def note(self, text: str) -> None:
        self._notes.append(text)
        self._refresh()

    def step(self, title: str) -> None:
        self._talk.append(("step", f"— {title}"))
        self._refresh()

    def said(self, who: str, text: str) -> None:
        self._talk.append((who, text))
        self._refresh()

    def ledger(self, snapshot: LedgerSnapshot) -> None:
        before = self._ledger
        self._ledger = snapshot.lines()
        self._history.extend(f"{line}" for line in self._ledger if line not in before
                             and before != ["(starting)"])
        self._refresh()

    def close(self) -> None:
        self._live.stop()


# ---------------------------------------------------------------------------- the model


class DemoModel:
    """The agent's backend in the demo: the real one, except that while ``down`` its answers
    go to ``outage`` (a backend whose server does not answer). Counting tokens for quotes
    always uses the real one."""

    def __init__(self, real: Backend, outage: Backend) -> None:
        self.real = real
        self.outage = outage
        self.down = False

    @property
    def name(self) -> str:
        return self.real.name

    @property
    def default_max_tokens(self) -> int:
        return self.real.default_max_tokens

    @property
    def models(self) -> tuple[str, ...]:
        return self.real.models

    def max_prompt_tokens(self, max_tokens: int) -> int:
        return self.real.max_prompt_tokens(max_tokens)

    async def count_prompt_tokens(self, request: WorkRequest) -> TokenCount:
        return await self.real.count_prompt_tokens(request)

    async def answer(self, request: WorkRequest) -> WorkResult:
        return await (self.outage if self.down else self.real).answer(request)

    async def aclose(self) -> None:
        await self.outage.aclose()
        await self.real.aclose()


def dead_port() -> socket.socket:
    """A local TCP port bound and never listened on: a connection to it is refused at once,
    and no other process can take the port while the socket is held."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def outage_backend(port: int, http: httpx.AsyncClient) -> Backend:
    return OpenAIBackend(OpenAIConfig(base_url=f"http://127.0.0.1:{port}/v1", model="down",
                                      max_attempts=1, tokenize=False, connect_timeout_s=2.0),
                         http)


# ---------------------------------------------------------------------------- the scenario


@dataclass
class Demo:
    view: View
    ledger: Ledger
    asker: DmClient
    asker_wallet: DevWallet
    agent_wallet: DevWallet
    model: DemoModel
    answered: int = 0

    async def snapshot(self) -> LedgerSnapshot:
        pool = await self.ledger.pool_status()
        balance = await self.ledger.balance(self.asker.keys.public_hex)
        jobs = await self.ledger.recent_jobs(self.asker.keys.public_hex, 20)
        return LedgerSnapshot(
            pool_available_msat=pool.available_msat, pool_reserved_msat=pool.reserved_msat,
            pool_spent_today_msat=pool.spent_today_msat,
            asker_balance_msat=balance.available_msat,
            asker_refunds_msat=balance.pending_refund_msat,
            asker_wallet_msat=await self.asker_wallet.balance_msat(),
            agent_wallet_msat=await self.agent_wallet.balance_msat(),
            jobs=tuple(f"{j.serve.value}/{j.state.value}"
                       for j in sorted(jobs, key=lambda j: j.created_at)),
        )

    async def show_ledger(self) -> None:
        self.view.ledger(await self.snapshot())

    async def say(self, text: str) -> str:
        self.view.said("asker", text)
        return await self.asker.send(text)

    async def heard(self, request_id: str, index: int = 0) -> str:
        text = await self.asker.reply(request_id, index, REPLY_TIMEOUT_S)
        self.view.said("agent", text)
        self.answered += 1
        return text

    async def pay(self, text: str) -> bool:
        match = BOLT11.search(text.lower())
        if match is None:
            return False
        bolt11 = match.group(0)
        result = await self.asker_wallet.pay_invoice(bolt11, max_fee_msat=0)
        amount = decode_invoice(bolt11).amount_msat or 0
        self.view.said("wallet", f"the asker's dev wallet pays the invoice of {sats(amount)}: "
                       f"{result.state.value}")
        return True

    async def question(self, text: str) -> None:
        """Ask; when the reply is a quote, pay its invoice and wait for the answer."""
        rid = await self.say(text)
        first = await self.heard(rid)
        if await self.pay(first):
            await self.heard(rid, 1)
        await self.show_ledger()

    async def failing(self, text: str) -> None:
        """A paid question whose work fails: the model is down from the quote to the answer."""
        self.model.down = True
        self.view.said("demo", "the model server goes down (the agent's model now points at a "
                       "port where nothing answers)")
        try:
            await self.question(text)
        finally:
            self.model.down = False
        self.view.said("demo", "the model server is back")

    async def run(self) -> None:
        self.view.step("1. a question within today's free share: the pool pays")
        await self.question("What is Nostr? One sentence.")

        self.view.step("2. a question the free share no longer covers: the pool pays part, "
                       "the asker pays the rest")
        await self.question("What is Lightning? One sentence.")

        self.view.step("3. estimate: a quote, nothing is charged")
        rid = await self.say("estimate Why is the sky blue?")
        await self.heard(rid)

        self.view.step("4. balance")
        rid = await self.say("balance")
        await self.heard(rid)

        self.view.step("5. a paid question whose work fails: the payment is refunded")
        await self.failing("What is a relay? One sentence.")

        self.view.step("6. refund: unused sats back to the asker's wallet")
        # a refund is claimed with an invoice for its whole sats; the sub-sat rest is balance
        owed = [r for r in await self.ledger.pending_refunds(self.asker.keys.public_hex)
                if r.amount_msat >= 1000]
        for refund in owed:
            whole_msat = refund.amount_msat - refund.amount_msat % 1000
            invoice = await self.asker_wallet.make_invoice(whole_msat, description="my refund")
            rid = await self.say(f"refund {invoice.bolt11}")
            await self.heard(rid)
        if not owed:
            rid = await self.say("refund")
            await self.heard(rid)
        await self.show_ledger()


async def _demo(args: argparse.Namespace, view: View, workdir: Path) -> int:
    ai: OpenAIConfig | None = None
    local = LocalModelConfig(max_tokens=DEMO_MAX_TOKENS)
    if args.config:
        settings = load_settings(args.config)
        ai, local = settings.ai, settings.local
    view.note(f"timmy demo: {NOT_REAL_MONEY}. Everything runs on this machine, in {workdir}.")
    view.note(MODEL_NOTE)
    relay = LocalRelay(workdir / "relay")
    await asyncio.to_thread(relay.start)
    try:
        view.note(f"relay: {relay.url} (process group {relay.pid})")
        return await _with_relay(args, view, workdir, relay, ai, local)
    finally:
        await asyncio.to_thread(relay.stop)


async def _with_relay(args: argparse.Namespace, view: View, workdir: Path, relay: LocalRelay,
                      ai: OpenAIConfig | None, local: LocalModelConfig) -> int:
    network = DevNetwork()
    agent_wallet = DevWallet(dev_network=network)
    asker_wallet = DevWallet(dev_network=network, balance_msat=ASKER_WALLET_MSAT)
    agent_keys, asker_keys = Keys.generate(), Keys.generate()
    relays = [RelayConfig(relay.url)]
    db = await Database.open(workdir / "ledger.sqlite3")
    closed = dead_port()
    try:
        ledger = Ledger(db, DEMO_LIMITS)
        await ledger.credit_pool(POOL_TOPUP_MSAT, "demo-topup", source="operator")
        view.note(f"pool: funded with {sats(POOL_TOPUP_MSAT)} by an operator top-up")
        async with httpx.AsyncClient(timeout=30.0) as http:
            real = make_backend(ai, local, http)
            if isinstance(real, LocalBackend):
                view.note("loading the embedded model ...")
                await real.start()
            backend = DemoModel(real, outage_backend(closed.getsockname()[1], http))
            max_tokens = ai.max_tokens if ai is not None else local.max_tokens
            agent = Agent(AgentParts(
                keys=agent_keys, relays=relays, db=db, wallet=agent_wallet, backend=backend,
                http=http, pricing=DEMO_PRICING, limits=DEMO_LIMITS, service=DEMO_SERVICE,
                profile=ProfileConfig(name="Timmy (demo)"), admins=frozenset(),
                max_tokens=max_tokens, payout_policy=PayoutPolicy()))
            asker_pool = RelayPool(relays, keys=asker_keys)
            status: StatusServer | None = None
            try:
                await agent.start()
                view.note(f"agent: {agent_keys.npub}")
                status = StatusServer(agent)
                await status.start()
                view.note(f"pool page: {status.url}/  (and {status.url}/metrics, "
                          f"{status.url}/healthz)")
                asker = DmClient(asker_keys, agent_keys.public_hex, asker_pool)
                await asker.start()
                demo = Demo(view, ledger, asker, asker_wallet, agent_wallet, backend)
                await demo.show_ledger()
                await demo.run()
                report = await check(db, DEMO_LIMITS)
                view.step("ledger check")
                view.note(f"ledger check: {'ok' if report.ok else 'FAILED'} "
                          f"({report.transfers} transfers)")
                for violation in report.violations:
                    view.note(f"VIOLATION: {violation}")
                if args.interactive and report.ok:
                    view.note(f"the agent keeps running: DM {agent_keys.npub} on {relay.url} "
                              "(Ctrl-C stops everything)")
                    await asyncio.Event().wait()
                return 0 if report.ok else 1
            finally:
                if status is not None:
                    await status.stop()
                await asker_pool.stop()
                await agent.stop()
                await backend.aclose()
                await agent_wallet.aclose()
                await asker_wallet.aclose()
    finally:
        closed.close()
        await db.close()


def _run_demo(args: argparse.Namespace) -> int:
    # Ctrl-C stops the demo even when it was started with SIGINT ignored (a background job of a
    # script inherits that disposition)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    configure_logging(logging.WARNING if not args.verbose else logging.INFO, sys.stderr)
    logging.getLogger("bot.wallets.dev").setLevel(logging.ERROR)  # said once on screen
    view: View = PlainView(lambda line: print(line, flush=True)) if args.plain else RichView()
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="timmy-demo-") as tmp:
            code = asyncio.run(_demo(args, view, Path(tmp)))
    except KeyboardInterrupt:
        view.close()
        print("timmy demo: stopped", file=sys.stderr)
        return 130
    except (ConfigError, LocalRelayError, DmClientError, WorkError) as exc:
        view.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, DmClientError) else 2
    view.close()
    print(f"timmy demo: {'done' if code == 0 else 'FAILED'} in "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    return code


def add_demo_command(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "demo", help="the whole agent on this machine, NOT REAL MONEY (no configuration)",
        description="Start a local relay, the agent with a dev wallet and a funded pool, and a "
                    "scripted asker that DMs it over the relay: a free question, a partial "
                    "payment, estimate, balance, a paid question whose work fails (the demo "
                    "takes the model server down) and is refunded, refund; then the ledger "
                    "check.\n\nexamples:\n"
                    "  scripts/run demo          (set-up included)\n"
                    "  timmy demo --plain        (plain lines)\n"
                    "  timmy demo --interactive  (then DM the agent yourself)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plain", action="store_true",
                        help="plain lines instead of the live view (for logs and tests)")
    parser.add_argument("--interactive", action="store_true",
                        help="keep the agent running after the steps so you can DM it")
    parser.add_argument("--config", help="use this timmy.toml's [ai] or [local] model "
                        "(nothing else from it)")
    parser.add_argument("--verbose", action="store_true", help="the agent's info log on stderr")
    parser.set_defaults(handler=_run_demo)
