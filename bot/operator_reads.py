"""``timmy jobs``, ``timmy refunds`` and ``timmy relays``: what an operator looks at.

- ``jobs [--pubkey P] [--state S]... [--limit N]``: the newest jobs of the ledger (one pubkey's
  with ``--pubkey``), newest first, optionally only those in the given states.
- ``refunds [--pubkey P] [--all]``: jobs with a refund owed (pending, or being paid out);
  ``--all`` also those already paid or credited to a balance.
- ``relays [--relay URL]...``: each configured relay checked in turn, a line as each answers:
  its NIP-11 document (name, software, limits, AUTH or payment required), whether it asks for
  NIP-42 AUTH on connect, and the round-trip time of a subscription to its end of stored events.
  Exit 1 when a relay is unreachable.

They read the ledger (never write) and print no secret and no asker's text.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import websockets

from bot.agent.texts import sat_figure
from bot.config import ConfigError, Settings, load_settings
from bot.ledger_location import LocationError, existing_ledger
from bot.nostr.errors import NostrError
from bot.nostr.keys import parse_public_key
from bot.nostr.nip11 import RelayInfo, fetch_relay_info
from bot.relays.config import RelayConfig, load_relays_toml
from storage import JobRecord, JobState, Ledger, LedgerError, RefundState

Subparsers = Any  # argparse's private _SubParsersAction

RELAY_TIMEOUT_S = 10.0
OWED = (RefundState.PENDING, RefundState.PAYING)


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, allow_dev_wallet=True)  # reads only; nothing is paid


def _sats(msat: int | None) -> str:
    return "-" if msat is None else sat_figure(msat)


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _read_ledger(args: argparse.Namespace,
                 read: Callable[[Ledger], Awaitable[list[JobRecord]]]) -> list[JobRecord] | int:
    try:
        s = _settings(args)
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        where = existing_ledger(args.db, s.ledger)
    except LocationError as exc:
        return _fail(str(exc))

    async def run() -> list[JobRecord]:
        db = await where.open()
        try:
            return await read(Ledger(db, s.limits))
        finally:
            await db.close()

    try:
        return asyncio.run(run())
    except LedgerError as exc:
        return _fail(str(exc))


def _pubkey(args: argparse.Namespace) -> str | None:
    return parse_public_key(args.pubkey) if args.pubkey else None


async def _jobs_of(ledger: Ledger, pubkey: str | None, limit: int) -> list[JobRecord]:
    """Newest first: one pubkey's newest ``limit`` jobs, or every job."""
    if pubkey is not None:
        return await ledger.recent_jobs(pubkey, limit)
    every = await ledger.jobs_in_state(*JobState)
    return sorted(every, key=lambda j: (j.created_at, j.id), reverse=True)


def _print_jobs(jobs: Iterable[JobRecord], refund_column: bool = True) -> int:
    rows = list(jobs)
    print(f"{'created (UTC)':<19}  {'job':<12}  {'pubkey':<12}  {'serve':<8}  {'state':<9}  "
          f"{'quoted':>9}  {'charged':>9}  {'refund':>9}  refund state")
    for j in rows:
        print(f"{_when(j.created_at):<19}  {j.id[:12]:<12}  {j.pubkey[:12]:<12}  "
              f"{j.serve.value:<8}  {j.state.value:<9}  {_sats(j.estimate_msat):>9}  "
              f"{_sats(j.charged_msat):>9}  {_sats(j.refund_msat):>9}  "
              f"{j.refund_state.value if refund_column else ''}")
    print(f"{len(rows)} job(s); amounts in sats")
    return 0


def _jobs(args: argparse.Namespace) -> int:
    try:
        pubkey = _pubkey(args)
        states = {JobState(s) for s in args.state}
    except (NostrError, ValueError) as exc:
        return _fail(str(exc))
    found = _read_ledger(args, lambda ledger: _jobs_of(ledger, pubkey, max(args.limit, 1)))
    if isinstance(found, int):
        return found
    picked = [j for j in found if not states or j.state in states][: args.limit]
    return _print_jobs(picked)


def _refunds(args: argparse.Namespace) -> int:
    try:
        pubkey = _pubkey(args)
    except NostrError as exc:
        return _fail(str(exc))
    found = _read_ledger(args, lambda ledger: _jobs_of(ledger, pubkey, 1000))
    if isinstance(found, int):
        return found
    wanted = [j for j in found if j.refund_msat > 0
              and (args.all or j.refund_state in OWED)]
    owed = sum(j.refund_msat for j in wanted if j.refund_state in OWED)
    _print_jobs(wanted)
    print(f"owed now: {_sats(owed)} sats")
    return 0


# ------------------------------------------------------------------------------ relays


@dataclass(frozen=True, slots=True)
class RelayCheck:
    url: str
    info: RelayInfo | None
    info_error: str | None
    auth_on_connect: bool
    round_trip_ms: float | None
    error: str | None

    def lines(self) -> list[str]:
        if self.error is not None:
            return [f"{self.url}: UNREACHABLE ({self.error})"]
        out = [f"{self.url}: ok, round trip {self.round_trip_ms:.0f} ms, "
               f"AUTH on connect: {'yes' if self.auth_on_connect else 'no'}"]
        if self.info is None:
            out.append(f"  NIP-11: none ({self.info_error})")
            return out
        info, lim = self.info, self.info.limitation
        out.append(f"  NIP-11: {info.name or '(no name)'}; software "
                   f"{info.software or '?'} {info.version or ''}".rstrip())
        out.append(f"  nips: {', '.join(map(str, info.supported_nips)) or '(none listed)'}")
        out.append(f"  limits: max message {lim.max_message_length or '-'} bytes, max "
                   f"subscriptions {lim.max_subscriptions or '-'}, max content "
                   f"{lim.max_content_length or '-'}; auth required "
                   f"{'yes' if lim.auth_required else 'no'}, payment required "
                   f"{'yes' if lim.payment_required else 'no'}")
        return out


async def check_relay(http: httpx.AsyncClient, url: str,
                      timeout_s: float = RELAY_TIMEOUT_S) -> RelayCheck:
    """NIP-11, then a websocket: an empty-result REQ timed to its EOSE (or CLOSED)."""
    info: RelayInfo | None = None
    info_error: str | None = None
    try:
        info = await fetch_relay_info(http, url, timeout_s)
    except NostrError as exc:
        info_error = str(exc)
    auth = False
    sub = "timmy-check-" + os.urandom(4).hex()
    req = json.dumps(["REQ", sub, {"ids": [os.urandom(32).hex()], "limit": 1}])
    try:
        async with asyncio.timeout(timeout_s):
            async with websockets.connect(url, open_timeout=timeout_s, close_timeout=1) as ws:
                started = time.monotonic()
                await ws.send(req)
                while True:
                    frame = json.loads(await ws.recv())
                    if isinstance(frame, list) and frame and frame[0] == "AUTH":
                        auth = True
                    elif (isinstance(frame, list) and len(frame) > 1 and frame[1] == sub
                          and frame[0] in {"EOSE", "CLOSED"}):
                        break
                elapsed_ms = (time.monotonic() - started) * 1000
                with contextlib.suppress(Exception):
                    await ws.send(json.dumps(["CLOSE", sub]))
    except TimeoutError:
        return RelayCheck(url, info, info_error, auth, None, f"no answer within {timeout_s:.0f} s")
    except (OSError, websockets.WebSocketException, ValueError) as exc:
        return RelayCheck(url, info, info_error, auth, None, type(exc).__name__)
    return RelayCheck(url, info, info_error, auth, elapsed_ms, None)


def _relays(args: argparse.Namespace) -> int:
    try:
        if args.relay:
            relays = [RelayConfig(url) for url in args.relay]
        else:
            relays = load_relays_toml(_settings(args).relays_path)
    except ConfigError as exc:
        return _fail(str(exc))

    async def run() -> int:
        bad = 0
        async with httpx.AsyncClient() as http:
            for relay in relays:
                print(f"checking {relay.url} ...", file=sys.stderr, flush=True)
                result = await check_relay(http, relay.url, args.timeout)
                bad += result.error is not None
                for line in result.lines():
                    print(line, flush=True)
        print(f"{len(relays) - bad} of {len(relays)} relays answered")
        return 1 if bad else 0

    return asyncio.run(run())


def _with_db(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", help="the TOML configuration (default: $TIMMY_CONFIG, "
                        "else ./timmy.toml if present, else built-in defaults)")
    parser.add_argument("--db", help="the ledger: a SQLite file or a postgresql:// URL "
                        "(default: from the configuration)")
    parser.add_argument("--pubkey", help="only this asker's (npub or hex)")
    return parser


def add_operator_reads(sub: Subparsers) -> None:
    jobs = _with_db(sub.add_parser(
        "jobs", help="recent jobs from the ledger, newest first",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Recent jobs, newest first.\n\nexamples:\n  timmy jobs --limit 50\n"
                    "  timmy jobs --state failed --state running\n  timmy jobs --pubkey npub1..."))
    jobs.add_argument("--state", action="append", default=[],
                      choices=[s.value for s in JobState], help="only jobs in this state "
                      "(repeatable)")
    jobs.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    jobs.set_defaults(handler=_jobs)

    refunds = _with_db(sub.add_parser(
        "refunds", help="refunds owed (pending or being paid out)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Jobs with a refund owed.\n\nexamples:\n  timmy refunds\n"
                    "  timmy refunds --all --pubkey npub1..."))
    refunds.add_argument("--all", action="store_true",
                         help="also refunds already paid or credited to a balance")
    refunds.set_defaults(handler=_refunds)

    relays = sub.add_parser(
        "relays", help="check each relay: NIP-11 limits, AUTH, round-trip time",
        description="Connect to each configured relay (or --relay) and report its NIP-11 "
                    "limits, whether it asks for AUTH, and a round-trip time; exit 1 when one "
                    "is unreachable.\n\nexamples:\n  timmy relays --config timmy.toml\n"
                    "  timmy relays --relay wss://relay.example.com",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    relays.add_argument("--config", help="the TOML configuration whose relays.toml to check")
    relays.add_argument("--relay", action="append", default=[],
                        help="a relay URL to check instead (repeatable)")
    relays.add_argument("--timeout", type=float, default=RELAY_TIMEOUT_S,
                        help=f"seconds per relay (default {RELAY_TIMEOUT_S:.0f})")
    relays.set_defaults(handler=_relays)
