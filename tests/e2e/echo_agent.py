"""A stand-in for ``timmy run`` that only echoes, to prove the end-to-end harness itself.

It reads the same ``timmy.toml`` (only ``[agent] relays`` and ``key_file``), behaves as the
contract says from outside — the ready line on stderr once subscribed, SIGTERM → exit 0 — and
answers each DM with ``echo: <text>`` in the asker's protocol through our own relay pool and
inbox. It has no ledger, no wallet and no AI: the harness self-tests use it where the real agent
would be, so the harness is proved before the agent exists. Run:
``python -m tests.e2e.echo_agent --config PATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.config import load_relays_toml
from bot.relays.inbox import DirectMessage, Inbox
from bot.secrets import read_secret_file


async def serve(config_path: Path) -> int:
    data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    agent = data["agent"]
    keys = Keys.parse(read_secret_file(Path(agent["key_file"]), "agent key").reveal())
    relays = load_relays_toml(agent["relays"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with RelayPool(relays, keys=keys) as pool:
        inbox: Inbox

        async def echo(dm: DirectMessage) -> None:
            await inbox.reply(dm, f"echo: {dm.text}")

        inbox = Inbox(pool, keys, echo)
        await inbox.start()
        if not await pool.wait_connected(10):
            print("echo agent: no relay answered", file=sys.stderr)
            return 1
        print(f"timmy: running as {keys.npub} ({keys.public_hex}) on {len(relays)} relays",
              file=sys.stderr, flush=True)
        await stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="echo stand-in for the harness self-tests")
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    return asyncio.run(serve(Path(args.config)))


if __name__ == "__main__":
    sys.exit(main())
