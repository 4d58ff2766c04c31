"""The ``timmy`` command line.

Each command group is a function that adds its sub-parser to the top-level sub-parsers and sets
``handler`` (a function ``(args) -> exit code``); to add a group, write one and list it in
``COMMAND_GROUPS``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bot.agent.demo import add_demo_command
from bot.agent.run import add_run_command
from bot.commands import add_operator_commands
from bot.operator_reads import add_operator_reads
from storage import Database, LedgerError, Limits, check

Subparsers = Any  # argparse's private _SubParsersAction


def _ledger_check(args: argparse.Namespace) -> int:
    path = Path(args.db)
    if not path.is_file():
        print(f"error: no database file at {path}", file=sys.stderr)
        return 2
    limits: Limits | None = None
    if args.daily_free_msat is not None or args.daily_free_jobs is not None:
        try:
            limits = Limits(
                daily_free_msat=args.daily_free_msat if args.daily_free_msat is not None else 0,
                daily_free_jobs=args.daily_free_jobs if args.daily_free_jobs is not None else 0,
                pool_daily_cap_msat=args.pool_daily_cap_msat,
            )
        except LedgerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    async def run() -> int:
        db = await Database.open(path)
        try:
            report = await check(db, limits)
        finally:
            await db.close()
        print(f"transfers: {report.transfers}")
        width = max((len(a) for a in report.balances), default=0)
        for account, balance in sorted(report.balances.items()):
            pending = report.pending.get(account, 0)
            extra = f"  (pending debits {pending} msat)" if pending else ""
            print(f"{account:<{width}}  {balance:>20} msat{extra}")
        for violation in report.violations:
            print(f"VIOLATION: {violation}")
        print("ok" if report.ok else f"{len(report.violations)} violation(s)")
        return 0 if report.ok else 1

    try:
        return asyncio.run(run())
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def add_ledger_commands(sub: Subparsers) -> None:
    ledger = sub.add_parser(
        "ledger", help="inspect the ledger",
        description="Inspect the ledger.\n\nexample:\n  timmy ledger check --db timmy.sqlite3",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    chk = ledger_sub.add_parser(
        "check",
        help="recompute every balance from the journal; exit 1 on any violation",
        description="Recompute every account from the journal and check its invariants (it "
                    "only reads: safe while the agent runs); exit 0 ok, 1 on a violation, 2 when "
                    "the file is unusable.\n\nexamples:\n  timmy ledger check --db timmy.sqlite3\n"
                    "  timmy ledger check --db timmy.sqlite3 --daily-free-msat 100000 "
                    "--daily-free-jobs 5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chk.add_argument("--db", required=True, help="path of the ledger's SQLite file")
    chk.add_argument("--daily-free-msat", type=int, help="also check this per-pubkey daily limit")
    chk.add_argument("--daily-free-jobs", type=int, help="also check this per-pubkey job limit")
    chk.add_argument("--pool-daily-cap-msat", type=int, help="also check this global daily cap")
    chk.set_defaults(handler=_ledger_check)


COMMAND_GROUPS: list[Callable[[Subparsers], None]] = [
    add_run_command, add_demo_command, add_ledger_commands, add_operator_commands,
    add_operator_reads]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="timmy", description="Timmy on Nostr")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMAND_GROUPS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
