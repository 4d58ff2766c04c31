"""Event-loop stall benchmark: how long hostile input holds the event loop (issue 12).

Run: ``.venv/bin/python bench/stall.py [--repeat N]``. A ticker task sleeps 1 ms at a time on the
loop; while each case runs on the same loop, the longest gap between two ticks is the stall every
relay, DM and job sees meanwhile. Each case runs ``N`` times (default 5); the best and the worst
are printed (the worst includes whatever else the machine did: run it on a quiet machine).

- ``before``: ``bolt11.decode`` of the 100,000-character bolt11 with a valid checksum (finding 5)
  — what ``validate_zap_receipt`` called on it before the fix, with no length cap;
- ``after``: ``validate_zap_receipt`` of a receipt signed by the provider carrying that bolt11,
  as it runs now (refused by the length cap before the library);
- ``capped_worst``: ``decode_invoice`` of a 4,096-character bolt11 with a valid checksum: the
  most the capped decoder can cost;
- ``frame_worst``: ``RelayConnection.handle_frame`` of the costliest 1 MiB frame for the JSON
  checks (``[[],[],...]``: a quarter of a million containers to walk).

The last line gives the best of each: ``stall_before_ms=A stall_after_ms=B capped_worst_ms=C
frame_worst_ms=D``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bolt11

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.nostr import nip57
from bot.nostr.event import sign_event
from bot.relays.backoff import BackoffPolicy
from bot.relays.config import RelayConfig
from bot.relays.connection import RelayConnection
from bot.relays.messages import MAX_FRAME_CHARS, Filter
from bot.wallets.base import InvalidInvoice
from bot.wallets.bolt11 import MAX_INVOICE_CHARS, decode_invoice
from tests.fuzz.strategies import ME, PROVIDER, long_bolt11


async def stall_ms(work: Callable[[], object]) -> float:
    """The longest gap between 1 ms ticks of another task while ``work`` runs on the loop."""
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = loop.time()
        while running:
            await asyncio.sleep(0.001)
            now = loop.time()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    work()
    await asyncio.sleep(0.01)
    running = False
    await task
    return max(gaps) * 1000


def swallow(fn: Callable[[], object]) -> Callable[[], object]:
    def call() -> object:
        try:
            return fn()
        except Exception as exc:  # the library raises what it likes; only time matters here
            return exc
    return call


async def main_async(repeat: int) -> dict[str, list[float]]:
    slow = long_bolt11(100_000)
    capped = long_bolt11(MAX_INVOICE_CHARS)
    receipt = sign_event(PROVIDER, 9735, "", [["p", ME.public_hex], ["bolt11", slow],
                                              ["description", "{}"]])

    async def nothing(*_: object) -> None:
        return None

    async def no_subs(conn: RelayConnection) -> list[tuple[str, list[Filter]]]:
        return []

    conn = RelayConnection(RelayConfig("wss://bench.example"), keys=None, on_event=nothing,
                           on_eose=nothing, subscriptions=no_subs,
                           backoff=BackoffPolicy(base_s=1, factor=2, cap_s=1, jitter=0))
    units = (MAX_FRAME_CHARS - 2) // 3
    frame = "[" + ",".join(["[]"] * units) + "]"

    def validate() -> object:
        result = nip57.validate_zap_receipt(receipt, provider_pubkey=PROVIDER.public_hex,
                                            recipient_pubkey=ME.public_hex)
        assert isinstance(result, nip57.ZapInvalid) and "longer than" in result.detail
        return result

    def capped_decode() -> object:
        try:
            return decode_invoice(capped)
        except InvalidInvoice as exc:
            return exc

    figures: dict[str, list[float]] = {}
    cases: dict[str, Callable[[], object]] = {
        "before": swallow(lambda: bolt11.decode(slow)),
        "after": validate,
        "capped_worst": capped_decode,
    }
    for name, work in cases.items():
        figures[name] = [await stall_ms(work) for _ in range(repeat)]
    figures["frame_worst"] = []
    for _ in range(repeat):  # a refused frame never awaits: its whole handling is the stall
        started = time.perf_counter()
        await conn.handle_frame(frame)
        figures["frame_worst"].append((time.perf_counter() - started) * 1000)
    assert conn.invalid_in == repeat  # refused (not a relay message), after the JSON checks
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description="event-loop stall from hostile input")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    figures = asyncio.run(main_async(args.repeat))
    print(f"{'case':14} {'best (ms)':>10} {'worst (ms)':>11}")
    for name, values in figures.items():
        print(f"{name:14} {min(values):>10.1f} {max(values):>11.1f}")
    best = {name: min(values) for name, values in figures.items()}
    print(f"stall_before_ms={best['before']:.1f} stall_after_ms={best['after']:.1f} "
          f"capped_worst_ms={best['capped_worst']:.1f} frame_worst_ms={best['frame_worst']:.1f}")


if __name__ == "__main__":
    main()
