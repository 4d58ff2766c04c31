"""Operator commands of the ``timmy`` command line that use the configuration.

- ``timmy keygen --out PATH``: a new agent key, written to a 0600 file; prints the npub.
- ``timmy config``: the effective configuration (no secret is printed), exit 2 when invalid.
- ``timmy estimate [--pubkey P] QUESTION``: the quote for a question (a dry run: it writes
  nothing; with ``--pubkey`` and an existing ledger, also the free/partial/gate decision).
- ``timmy ask [--nip04|--nip17] [--to NPUB] [--relay URL] QUESTION``: DMs a running agent
  (from a throwaway key, or ``--key-file``) through its relays and prints the replies; a quote's
  invoice is printed and the answer awaited. ``--local`` instead runs the configured AI backend
  once here and prints the answer, its token usage and what it would cost.
- ``timmy pool``: the public pool's status from the ledger.

Exit codes: 0 done, 1 the work failed, 2 bad configuration or input.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bot.agent.settings import ProfileConfig, ServiceConfig
from bot.agent.texts import sats
from bot.config import ConfigError, Settings, load_settings
from bot.dm_client import DmClient, DmClientError
from bot.dm_client import Protocol as DmProtocol
from bot.ledger_location import LocationError, existing_ledger
from bot.nostr import nip19
from bot.nostr.errors import NostrError
from bot.nostr.hexutil import is_hex
from bot.nostr.keys import Keys, parse_public_key
from bot.relays import RelayPool
from bot.relays.config import RelayConfig, load_relays_toml
from bot.secrets import SecretError, read_secret_file, write_secret_file
from bot.wallets.config import (
    LightningAddressConfig,
    LnbitsConfig,
    NwcConfig,
    SecretSource,
    WalletBackend,
    WalletConfig,
)
from bot.wallets.dev import ALLOW_DEV_WALLET_FLAG
from bot.work import (
    Answer,
    Backend,
    Estimate,
    WorkError,
    WorkFailure,
    WorkRequest,
    charge_for,
    estimate,
    make_backend,
)
from bot.work.local import LocalBackend
from storage import Ledger, LedgerError

Subparsers = Any  # argparse's private _SubParsersAction

WORK_TIMEOUT_S = 120.0


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _settings(args: argparse.Namespace) -> Settings:
    path: str | None = args.config
    return load_settings(path, allow_dev_wallet=bool(args.allow_dev_wallet))


def _keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists():
        return _fail(f"{out} exists; refusing to overwrite a key")
    keys = Keys.generate()
    try:
        write_secret_file(out, keys.nsec)
    except OSError as exc:
        return _fail(f"cannot write {out}: {exc.strerror}")
    print(f"wrote the agent's secret key to {out} (mode 0600)")
    print(f"npub: {keys.npub}")
    print(f"hex:  {keys.public_hex}")
    return 0


def _config(args: argparse.Namespace) -> int:
    try:
        s = _settings(args)
    except ConfigError as exc:
        return _fail(str(exc))
    print(f"config file:   {s.source or '(none: defaults)'}")
    print(f"ledger:        {s.ledger}")
    print(f"relays:        {s.relays_path}")
    try:
        keys = s.agent_keys()
        print(f"agent npub:    {keys.npub}")
    except ConfigError as exc:
        print(f"agent key:     not usable: {exc}")
    print(f"admins:        {', '.join(s.admins) or '(none)'}")
    p = s.pricing
    print(
        f"pricing:       {p.input_msat} msat in / {p.output_msat} msat out per {p.per_tokens} "
        f"tokens + {p.fixed_fee_msat} msat per answer"
    )
    lim = s.limits
    cap = "none" if lim.pool_daily_cap_msat is None else sats(lim.pool_daily_cap_msat)
    print(
        f"limits:        {sats(lim.daily_free_msat)} and {lim.daily_free_jobs} free jobs per "
        f"pubkey per UTC day; pool daily cap {cap}"
    )
    if s.ai is None:
        print(f"ai:            embedded model ({s.local.model_name})")
    else:
        key = "api key file" if s.ai.api_key_file else "api key env" if s.ai.api_key_env else ""
        print(f"ai:            {s.ai.model} at {s.ai.base_url} {('(' + key + ')') if key else ''}")
    _print_wallet(s.wallet)
    _print_fields("service:", s.service)
    _print_fields("profile:", s.profile)
    return 0


def _print_fields(title: str, values: ServiceConfig | ProfileConfig) -> None:
    print(title)
    for f in fields(values):
        print(f"  {f.name + ':':<30}{getattr(values, f.name)!r}")


def _secret_state(source: SecretSource) -> str:
    try:
        source.read(os.environ)
    except SecretError as exc:
        return f"{source.describe()} (not usable: {exc})"
    return f"{source.describe()} (readable)"


def _print_wallet(w: WalletConfig | None) -> None:
    if w is None:
        print("wallet:        none ([wallet] section missing: timmy run needs one)")
        return
    real = " (NOT REAL MONEY)" if w.backend is WalletBackend.DEV else ""
    if w.network is not None:
        network = w.network
    elif w.backend is WalletBackend.NWC:
        network = "the wallet's own (asked at start)"
    else:
        network = f"{w.invoice_network()} (default)"
    print(f"wallet:        {w.backend.value}{real}; network {network}")
    policy = w.payout_policy
    print(f"  payout fee cap: max({sats(policy.max_fee_base_msat)}, {policy.max_fee_ppm} ppm)")
    if w.lnurl_insecure_hosts:
        print(f"  LNURL over plain http allowed for: {', '.join(w.lnurl_insecure_hosts)}")
    table = w.backend_table
    if isinstance(table, LnbitsConfig):
        print(f"  lnbits url:     {table.url}")
        print(f"  invoice key:    {_secret_state(table.invoice_key)}")
        admin = table.admin_key
        print(f"  admin key:      {_secret_state(admin) if admin else 'none (no payouts)'}")
    elif isinstance(table, NwcConfig):
        print(f"  nwc uri:        {_secret_state(table.uri)}")
    elif isinstance(table, LightningAddressConfig):
        print(f"  address:        {table.address}")
        print(f"  verify url:     {table.verify_url_template or '(none)'}")


async def _with_backend(s: Settings, fn: Callable[[Backend], Awaitable[int]]) -> int:
    async with httpx.AsyncClient() as client:
        backend = make_backend(s.ai, s.local, client)
        try:
            if isinstance(backend, LocalBackend):  # the first load assembles the model file
                print("loading the embedded model ...", file=sys.stderr, flush=True)
                started = time.monotonic()
                await backend.start()
                print(f"model ready in {time.monotonic() - started:.1f} s", file=sys.stderr,
                      flush=True)
            return await fn(backend)
        finally:
            await backend.aclose()


def _request(s: Settings, question: str) -> WorkRequest:
    max_tokens = s.ai.max_tokens if s.ai is not None else s.local.max_tokens
    return WorkRequest(question=question, max_tokens=max_tokens, timeout_s=WORK_TIMEOUT_S)


def _print_quote(quote: Estimate) -> None:
    how = "counted by the model's tokenizer" if quote.prompt_exact else "an upper bound"
    print(
        f"quote: {sats(quote.amount_msat)} ({quote.amount_msat} msat) for {quote.prompt_tokens} "
        f"prompt tokens ({how}) + up to {quote.max_completion_tokens} answer tokens"
    )


QuotedStep = Callable[[Backend, Estimate], Awaitable[int]]


def _quote_then(s: Settings, request: WorkRequest, then: QuotedStep) -> int:
    """Quote ``request`` with the configured backend, print the quote, then run ``then``."""

    async def run(backend: Backend) -> int:
        quote = await estimate(backend, request, s.pricing)
        if isinstance(quote, WorkFailure):
            return _fail(quote.message)
        _print_quote(quote)
        return await then(backend, quote)

    try:
        return asyncio.run(_with_backend(s, run))
    except (WorkError, LedgerError) as exc:
        return _fail(str(exc))


def _estimate(args: argparse.Namespace) -> int:
    try:
        s = _settings(args)
        request = _request(s, args.question)
        pubkey = parse_public_key(args.pubkey) if args.pubkey else None
    except (ConfigError, WorkError, NostrError) as exc:
        return _fail(str(exc))

    async def decide(_: Backend, quote: Estimate) -> int:
        if pubkey is None:
            return 0
        if not s.ledger.exists():
            print(f"no ledger at {s.ledger}: no decision without it")
            return 0
        db = await s.ledger.open()
        try:
            decision = await Ledger(db, s.limits).decide_dry_run(pubkey, quote.amount_msat)
        finally:
            await db.close()
        held = (
            f" (held from the balance: {sats(decision.hold_msat)})" if decision.hold_msat else ""
        )
        print(
            f"decision: {decision.serve.value} ({decision.reason.value}): the pool would "
            f"cover {sats(decision.absorb_msat)}, the asker pays "
            f"{sats(decision.work_amount_msat)}{held}"
        )
        return 0

    return _quote_then(s, request, decide)


def _ask_local(args: argparse.Namespace) -> int:
    try:
        s = _settings(args)
        request = _request(s, args.question)
    except (ConfigError, WorkError) as exc:
        return _fail(str(exc))

    async def answer(backend: Backend, quote: Estimate) -> int:
        result = await backend.answer(request)
        if not isinstance(result, Answer):
            return _fail(f"the work failed ({result.kind.value}: {result.message})", 1)
        charge = charge_for(s.pricing, quote, result)
        print(result.text)
        print(
            f"-- {result.model}: {result.prompt_tokens} prompt + {result.completion_tokens} "
            f"answer tokens ({result.usage_source}); cost {sats(charge.amount_msat)} "
            f"({charge.amount_msat} msat)"
        )
        return 0

    return _quote_then(s, request, answer)


INVOICE = re.compile(r"\bln(?:bcrt|bc|tbs|tb)[0-9]+[munp]?1[0-9a-z]+\b", re.IGNORECASE)


def _ask(args: argparse.Namespace) -> int:
    if args.local:
        return _ask_local(args)
    try:
        s = _settings(args)
        agent = parse_public_key(args.to) if args.to else s.agent_keys().public_hex
        relays = ([RelayConfig(url) for url in args.relay] if args.relay
                  else load_relays_toml(s.relays_path))
        keys = (Keys.parse(read_secret_file(Path(args.key_file), "asker key").reveal())
                if args.key_file else Keys.generate())
    except (ConfigError, NostrError, SecretError) as exc:
        return _fail(str(exc))
    protocol: DmProtocol = "nip04" if args.nip04 else "nip17"

    async def run() -> int:
        client = DmClient(keys, agent, RelayPool(relays, keys=keys))
        try:
            await client.start()
            print(f"asking {agent[:16]}… from {keys.npub} over {protocol} on "
                  f"{len(relays)} relay(s)", file=sys.stderr)
            request_id = await client.send(args.question, protocol)
            index = 0
            while True:
                text = await client.reply(request_id, index, args.timeout)
                print(text, flush=True)
                if not INVOICE.search(text):
                    return 0
                print("-- pay the invoice above and the answer follows; waiting "
                      f"(up to {args.timeout:.0f} s)", file=sys.stderr, flush=True)
                index += 1
        except DmClientError as exc:
            return _fail(str(exc), 1)
        finally:
            await client.stop()

    return asyncio.run(run())


def _pool(args: argparse.Namespace) -> int:
    try:
        s = _settings(args)
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        where = existing_ledger(args.db, s.ledger)
    except LocationError as exc:
        return _fail(str(exc))
    if not 0 <= args.zaps <= 1000:
        return _fail("--zaps must be between 0 and 1000")

    async def run() -> int:
        db = await where.open()
        try:
            ledger = Ledger(db, s.limits)
            st = await ledger.pool_status()
            zaps = await ledger.recent_zaps(args.zaps) if args.zaps else []
        finally:
            await db.close()
        cap = "none" if st.daily_cap_msat is None else sats(st.daily_cap_msat)
        print(f"available:   {sats(st.available_msat)}")
        print(f"reserved:    {sats(st.reserved_msat)}")
        print(f"spent today: {sats(st.spent_today_msat)} on {st.jobs_today} question(s) "
              f"(daily cap {cap})")
        print(f"funded:      {sats(st.total_in_msat)} by {st.zap_count} zaps "
              f"from {st.zapper_count} zappers")
        print(f"spent:       {sats(st.total_spent_msat)}")
        if zaps:
            print("recent zaps (newest first):")
        for z in zaps:
            who = (nip19.encode_bytes("npub", bytes.fromhex(z.funder))
                   if z.funder and is_hex(z.funder, 64) else "someone")
            when = datetime.fromtimestamp(z.created_at, UTC).strftime("%Y-%m-%d %H:%M")
            print(f"  {when}  {sats(z.amount_msat):>10}  {who}"
                  + (f"  \"{z.note}\"" if z.note else ""))
        return 0

    try:
        return asyncio.run(run())
    except LedgerError as exc:
        return _fail(str(exc))


def _with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", help="the TOML configuration (default: $TIMMY_CONFIG, "
                        "else ./timmy.toml if present, else built-in defaults)")
    parser.add_argument(ALLOW_DEV_WALLET_FLAG, action="store_true",
                        help="accept [wallet] backend = \"dev\" (NOT REAL MONEY)")
    return parser


def add_operator_commands(sub: Subparsers) -> None:
    keygen = sub.add_parser(
        "keygen", help="create the agent's key in a 0600 file",
        description="Create a new Nostr key in a file only its owner can read (mode 0600; an "
                    "existing file is never overwritten) and print its npub.\n\nexamples:\n"
                    "  timmy keygen --out secrets/agent.nsec\n"
                    "  TIMMY_NSEC_FILE=secrets/agent.nsec timmy run",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    keygen.add_argument("--out", required=True, help="where to write the nsec (must not exist)")
    keygen.set_defaults(handler=_keygen)

    _with_config(sub.add_parser(
        "config", help="show the effective configuration",
        description="Print the configuration as understood (every section, each secret as "
                    "readable or not, never its value); exit 2 naming the file and key of any "
                    "mistake.\n\nexamples:\n  timmy config --config timmy.toml\n"
                    "  TIMMY_CONFIG=/etc/timmy/timmy.toml timmy config",
        formatter_class=argparse.RawDescriptionHelpFormatter)).set_defaults(handler=_config)

    est = _with_config(sub.add_parser(
        "estimate", help="quote a question (writes nothing)",
        description="Price a question as the agent would quote it (the configured backend "
                    "counts its tokens), and with --pubkey what that asker would pay today; "
                    "nothing is written.\n\nexamples:\n"
                    "  timmy estimate --config timmy.toml \"Why is the sky blue?\"\n"
                    "  timmy estimate --pubkey npub1... \"Why is the sky blue?\"",
        formatter_class=argparse.RawDescriptionHelpFormatter))
    est.add_argument("--pubkey", help="also show the decision for this asker (npub or hex)")
    est.add_argument("question")
    est.set_defaults(handler=_estimate)

    ask = _with_config(sub.add_parser(
        "ask", help="DM a running agent a question and print its reply (a smoke test)",
        description="Send a DM to a running agent over its relays and print the replies (a "
                    "quote's invoice is printed; pay it and the answer follows).\n\nexamples:\n"
                    "  timmy ask --config timmy.toml \"What is Nostr?\"\n"
                    "  timmy ask --to npub1... --relay wss://relay.example.com --nip04 balance\n"
                    "  timmy ask --local \"What is Nostr?\"   (the AI backend alone, no Nostr)",
        formatter_class=argparse.RawDescriptionHelpFormatter))
    ask.add_argument("--local", action="store_true",
                     help="answer with the configured AI backend here (no agent, no Nostr)")
    proto = ask.add_mutually_exclusive_group()
    proto.add_argument("--nip17", action="store_true", help="gift-wrapped DM (the default)")
    proto.add_argument("--nip04", action="store_true", help="legacy NIP-04 DM")
    ask.add_argument("--to", help="the agent's npub or hex (default: the configured agent key)")
    ask.add_argument("--relay", action="append", default=[],
                     help="a relay URL (repeatable; default: the configured relays.toml)")
    ask.add_argument("--key-file", help="the asker's nsec file (default: a throwaway key)")
    ask.add_argument("--timeout", type=float, default=120.0,
                     help="seconds to wait for each reply (default 120)")
    ask.add_argument("question")
    ask.set_defaults(handler=_ask)

    pool = _with_config(sub.add_parser(
        "pool", help="the public pool's status and its recent zappers",
        description="The pool as the ledger has it: available, reserved, given today and to "
                    "how many questions, funded by how many zaps, and the recent zaps (zapper, "
                    "amount, note).\n\nexamples:\n  timmy pool --config timmy.toml\n"
                    "  timmy pool --db timmy.sqlite3 --zaps 20",
        formatter_class=argparse.RawDescriptionHelpFormatter))
    pool.add_argument("--db", help="the ledger: a SQLite file or a postgresql:// URL "
                      "(default: from the configuration)")
    pool.add_argument("--zaps", type=int, default=10, metavar="N",
                      help="how many recent zaps to list (default 10; 0: none)")
    pool.set_defaults(handler=_pool)
