"""A stand-in for ``timmy run`` that only echoes, to prove the end-to-end harness itself.

It reads the same ``timmy.toml`` (only ``[agent] relays`` and ``key_file``), behaves as the
contract says from outside — the ready line on stderr once subscribed, SIGTERM → exit 0 — and
answers each DM with ``echo: <text>`` in the asker's protocol (replies tagged with the request
id, as the agent's are) through our own relay pool and NIP code. It has no ledger, no wallet and
no AI, and remembers nothing across restarts: the harness self-tests use it where the real agent
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

from bot.nostr import nip04, nip17
from bot.nostr.errors import NostrError
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.config import load_relays_toml
from bot.relays.pool import GIFT_WRAP_LOOKBACK_S
from bot.secrets import read_secret_file


def echo_events(keys: Keys, event: Event, rumors: set[str]) -> list[Event]:
    """The reply events to one DM (none for our own self copies, repeats, or what fails)."""
    try:
        if event.kind == nip04.KIND_ENCRYPTED_DM:
            text = nip04.decrypt(keys.secret_hex, event.pubkey, event.content)
            content = nip04.encrypt(keys.secret_hex, event.pubkey, f"echo: {text}")
            return [sign_event(keys, 4, content, [["p", event.pubkey], ["e", event.id]])]
        message = nip17.receive(keys, event)
    except NostrError:
        return []
    if message.sender == keys.public_hex or message.rumor_id in rumors:
        return []
    rumors.add(message.rumor_id)
    out = nip17.private_message(keys, message.sender, f"echo: {message.text}",
                                reply_to=message.rumor_id)
    return [out.to_recipient, out.to_self]


async def serve(config_path: Path) -> int:
    data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    agent = data["agent"]
    keys = Keys.parse(read_secret_file(Path(agent["key_file"]), "agent key").reveal())
    relays = load_relays_toml(agent["relays"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    rumors: set[str] = set()
    async with RelayPool(relays, keys=keys) as pool:

        async def echo(event: Event, relay_url: str) -> None:
            for reply in echo_events(keys, event, rumors):
                await pool.publish(reply)

        me = keys.public_hex
        await pool.subscribe([{"kinds": [4], "#p": [me]}], echo)
        await pool.subscribe([{"kinds": [1059], "#p": [me]}], echo,
                             lookback_s=GIFT_WRAP_LOOKBACK_S)
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
