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
from typing import Any

from bot.agent.demo import add_demo_command
from bot.agent.run import add_run_command
from bot.commands import add_operator_commands
from bot.ledger_location import LedgerLocation, LocationError, existing_ledger
from bot.operator_reads import add_operator_reads
from storage import CheckReport, LedgerError, Limits, check, copy_ledger

Subparsers = Any  # argparse's private _SubParsersAction


def _limits(args: argparse.Namespace) -> Limits | None:
    if args.daily_free_msat is None and args.daily_free_jobs is None:
        return None
    return Limits(
        daily_free_msat=args.daily_free_msat if args.daily_free_msat is not None else 0,
        daily_free_jobs=args.daily_free_jobs if args.daily_free_jobs is not None else 0,
        pool_daily_cap_msat=args.pool_daily_cap_msat,
    )


def _print_report(report: CheckReport) -> None:
    print(f"transfers: {report.transfers}")
    width = max((len(a) for a in report.balances), default=0)
    for account, balance in sorted(report.balances.items()):
        pending = report.pending.get(account, 0)
        extra = f"  (pending debits {pending} msat)" if pending else ""
        print(f"{account:<{width}}  {balance:>20} msat{extra}")
    for violation in report.violations:
        print(f"VIOLATION: {violation}")
    print("ok" if report.ok else f"{len(report.violations)} violation(s)")


async def _checked(where: LedgerLocation, limits: Limits | None) -> CheckReport:
    db = await where.open()
    try:
        return await check(db, limits)
    finally:
        await db.close()


def _ledger_check(args: argparse.Namespace) -> int:
    try:
        where = existing_ledger(args.db)
        limits = _limits(args)
        report = asyncio.run(_checked(where, limits))
    except (LocationError, LedgerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_report(report)
    return 0 if report.ok else 1


def _ledger_copy(args: argparse.Namespace) -> int:
    try:
        source = existing_ledger(args.source, flag="--from")
        target = existing_ledger(args.to, flag="--to")
        if source.path is None or target.url is None:
            raise LocationError("copy --from a SQLite file --to a postgresql:// URL")
    except LocationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def run() -> tuple[int, CheckReport, CheckReport]:
        src = await source.open()
        try:
            dst = await target.open()
            try:
                rows = await copy_ledger(src, dst)
                return rows, await check(src), await check(dst)
            finally:
                await dst.close()
        finally:
            await src.close()

    try:
        rows, before, after = asyncio.run(run())
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"copied {rows} rows from {source} to {target}")
    print(f"\n== check of {source}")
    _print_report(before)
    print(f"\n== check of {target}")
    _print_report(after)
    if before != after:
        print("\nthe two reports differ: the copy is NOT proven; do not use it")
        return 1
    print("\nthe two reports are equal: the copy is proven")
    return 0


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
                    "the database is unusable.\n\nexamples:\n"
                    "  timmy ledger check --db timmy.sqlite3\n"
                    "  timmy ledger check --db timmy.sqlite3 --daily-free-msat 100000 "
                    "--daily-free-jobs 5\n"
                    "  TIMMY_DB_PASSWORD=... timmy ledger check --db postgresql://timmy@db/timmy",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chk.add_argument("--db", required=True,
                     help="the ledger: a SQLite file or a postgresql:// URL (password apart: "
                          "TIMMY_DB_PASSWORD or TIMMY_DB_PASSWORD_FILE)")
    chk.add_argument("--daily-free-msat", type=int, help="also check this per-pubkey daily limit")
    chk.add_argument("--daily-free-jobs", type=int, help="also check this per-pubkey job limit")
    chk.add_argument("--pool-daily-cap-msat", type=int, help="also check this global daily cap")
    chk.set_defaults(handler=_ledger_check)
    cp = ledger_sub.add_parser(
        "copy",
        help="move a SQLite ledger into an empty PostgreSQL database, proven by equal checks",
        description="Copy every row of a SQLite ledger into an empty PostgreSQL database (one "
                    "transaction: all or nothing; a target that holds a ledger is refused), then "
                    "run check on both and print both reports: exit 0 when they are equal, 1 "
                    "when they differ, 2 when a database is unusable. Stop the agent first.\n\n"
                    "example:\n  TIMMY_DB_PASSWORD_FILE=secrets/db.password timmy ledger copy "
                    "--from data/timmy.sqlite3 --to postgresql://timmy@db.example/timmy",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cp.add_argument("--from", dest="source", required=True, help="the SQLite ledger file")
    cp.add_argument("--to", required=True,
                    help="the PostgreSQL database's postgresql:// URL (password apart)")
    cp.set_defaults(handler=_ledger_copy)


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
