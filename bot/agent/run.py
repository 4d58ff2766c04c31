"""``timmy run``: the real agent from ``timmy.toml`` + environment + ``relays.toml``.

Everything is validated before anything starts (a bad key, a malformed relay URL, a wallet not
answering, out-of-range prices or limits: exit 2 with a message naming the setting and the
fix). Then it serves until SIGTERM or SIGINT, stops gracefully (``Agent.stop``) and exits 0.
One log line per job step, with the job id and a pubkey prefix; never a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

import httpx

from bot.agent.agent import Agent, AgentParts
from bot.agent.web import StatusServer
from bot.config import ConfigError, Settings, load_settings
from bot.logs import configure_logging
from bot.nostr.keys import Keys
from bot.relays.config import RelayConfig, RelayConfigError, load_relays_toml
from bot.wallets.base import WalletStartError
from bot.wallets.config import PayoutPolicy
from bot.wallets.factory import make_wallet
from bot.work import Backend, WorkError, make_backend
from bot.work.local import LocalBackend
from storage import LedgerError

log = logging.getLogger("bot.agent")

Subparsers = Any  # argparse's private _SubParsersAction


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _setup_logging(level: str, log_format: str) -> None:
    # SafeFormatter: peer text (NOTICEs, refusal reasons) is escaped where records are formatted
    configure_logging(getattr(logging, level.upper(), logging.INFO), sys.stderr,
                      json_lines=log_format == "json")
    for noisy in ("httpx", "httpcore", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def serve(settings: Settings, keys: Keys, relays: list[RelayConfig],
                status_at: tuple[str, int] | None = None) -> int:
    """Run until stopped; ``status_at`` (host, port) also serves the read-only status port."""
    try:
        if settings.ledger.path is not None:
            settings.ledger.path.parent.mkdir(parents=True, exist_ok=True)
        db = await settings.ledger.open()
    except (OSError, LedgerError) as exc:
        return _fail(f"cannot open the ledger at {settings.ledger} ([agent] db): {exc}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=30.0) as http:
        backend = make_backend(settings.ai, settings.local)  # owns its lean model client
        problem = await _check_backend(backend, settings, http)
        if problem:
            await backend.aclose()
            await db.close()
            return _fail(problem)
        for sig in (signal.SIGTERM, signal.SIGINT):  # after the model load, which resets them
            loop.add_signal_handler(sig, stop.set)
        try:
            wallet = await make_wallet(settings.wallet, keys=keys, http=http,
                                       receipt_relays=[r.url for r in relays if r.read])
        except WalletStartError as exc:
            await backend.aclose()
            await db.close()
            return _fail(str(exc))
        max_tokens = settings.ai.max_tokens if settings.ai is not None else (
            settings.local.max_tokens)
        agent = Agent(AgentParts(
            keys=keys, relays=relays, db=db, wallet=wallet, backend=backend, http=http,
            pricing=settings.pricing, limits=settings.limits, service=settings.service,
            profile=settings.profile, admins=frozenset(settings.admins), max_tokens=max_tokens,
            payout_policy=settings.wallet.payout_policy if settings.wallet else PayoutPolicy(),
            lnurl_insecure_hosts=frozenset(settings.wallet.lnurl_insecure_hosts)
            if settings.wallet else frozenset()))
        status: StatusServer | None = None
        try:
            await agent.start()
            if status_at is not None:
                status = StatusServer(agent, *status_at)
                try:
                    await status.start()
                except OSError as exc:
                    return _fail(f"cannot serve the status port {status_at[0]}:{status_at[1]} "
                                 f"(--http-port): {exc.strerror}")
                log.info("status page, /metrics and /healthz at %s", status.url)
            where = "dev wallet: NOT REAL MONEY" if not wallet.is_real_money else wallet.name
            print(f"timmy: running as {keys.npub} ({keys.public_hex}) on {len(relays)} relays,"
                  f" wallet {where}", file=sys.stderr, flush=True)
            await stop.wait()
            log.info("stopping")
        finally:
            if status is not None:
                await status.stop()
            await agent.stop()
            await wallet.aclose()
            await backend.aclose()
            await db.close()
    log.info("stopped")
    return 0


async def _check_backend(backend: Backend, settings: Settings, http: httpx.AsyncClient
                         ) -> str | None:
    """Why the AI backend cannot work, or None: an endpoint must answer HTTP at all (any
    status will do: servers differ in what they serve at /models); the embedded model loads."""
    if settings.ai is not None:
        url = settings.ai.base_url.rstrip("/") + "/models"
        try:
            await http.get(url, timeout=10.0)
        except httpx.HTTPError as exc:
            return (f"the AI endpoint is not answering at {settings.ai.base_url} "
                    f"({type(exc).__name__}): check [ai] base_url, or remove [ai] to use the "
                    f"embedded model")
        return None
    if isinstance(backend, LocalBackend):
        log.info("loading the embedded model")
        try:
            await backend.start()
        except WorkError as exc:
            return f"the embedded model cannot load: {exc} ([ai.local], or configure [ai])"
    return None


def _run(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level, args.log_format)
    try:
        settings = load_settings(args.config, allow_dev_wallet=args.allow_dev_wallet)
        keys = settings.agent_keys()
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        relays = load_relays_toml(settings.relays_path)
    except RelayConfigError as exc:
        return _fail(f"{exc} ([agent] relays = {settings.relays_path})")
    status_at = (args.http_host, args.http_port) if args.http_port is not None else None
    return asyncio.run(serve(settings, keys, relays, status_at))


def add_run_command(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "run", help="run the agent (DMs in, answers out) until stopped",
        description="Run the agent from timmy.toml, the environment and relays.toml until "
                    "SIGINT or SIGTERM.\n\nexamples:\n  timmy run --config timmy.toml\n"
                    "  timmy run --log-format json --http-port 8080   (pool page, /metrics, "
                    "/healthz)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="timmy.toml (default: $TIMMY_CONFIG or ./timmy.toml)")
    parser.add_argument("--allow-dev-wallet", action="store_true",
                        help="allow the dev wallet (NOT REAL MONEY)")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="human", choices=["human", "json"],
                        help="human lines (default) or one JSON object per line")
    parser.add_argument("--http-port", type=int, help="serve the read-only pool page, /metrics "
                        "and /healthz on this port (default: off)")
    parser.add_argument("--http-host", default="127.0.0.1",
                        help="the address of --http-port (default 127.0.0.1; 0.0.0.0 in a "
                        "container)")
    parser.set_defaults(handler=_run)
