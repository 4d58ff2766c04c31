"""Zap benchmark: receipt validation and durable zap intake rates, beside baselines.

Run: ``.venv/bin/python bench/zaps.py [--seconds S] [--dir DIR]``. Each figure runs for about S
seconds (default 2):

- ``validate``: ``bot.nostr.nip57.validate_zap_receipt`` (bolt11 decode with signature recovery,
  description hash, embedded zap request parsed with id and signature checked, tag rules)
  against ``verify``: ``Event.from_dict`` of the same receipts (id + one Schnorr check, the
  baseline every incoming event pays anyway);
- ``intake``: ``ZapIntake.handle`` of distinct valid receipts (validation + ``credit_pool`` +
  exactly-once claim, each durably committed), 64 concurrent, against ``raw_credit``:
  ``ledger.credit_pool`` alone for as many distinct keys (baseline);
- ``replay``: ``ZapIntake.handle`` of receipts already counted (validation + the idempotent
  no-op), 64 concurrent — what a flood of replayed receipts costs.

The agent's LNURL endpoint is answered in-process (``httpx.MockTransport``): no network.
The last line is ``validate_per_s=N verify_per_s=M intake_per_s=I raw_credit_per_s=C
replay_per_s=R``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bot.agent.zaps import ZapIntake, ZapOutcome
from bot.nostr import nip57
from bot.nostr.event import Event
from bot.nostr.keys import Keys
from bot.wallets.bolt11 import encode_invoice
from bot.wallets.lightning_address import AgentAddress
from bot.wallets.lnurl import LnurlClient
from storage import Database, Intake, Ledger, Limits

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.rates import async_rate, rate

AGENT = Keys.generate()
PROVIDER = Keys.generate()
ADDRESS = "timmy@zaps.example"
RELAYS = ("wss://relay.example",)


def receipts(n: int) -> list[Event]:
    node_key = os.urandom(32).hex()
    out = []
    for i in range(n):
        zapper = Keys.generate()
        amount = 1_000 * (i % 50 + 1)
        request = nip57.build_zap_request(
            zapper, recipient_pubkey=AGENT.public_hex, amount_msat=amount, relays=RELAYS
        )
        description = request.to_json()
        preimage = os.urandom(32)
        bolt11 = encode_invoice(
            network="bc", amount_msat=amount, payment_hash=hashlib.sha256(preimage).hexdigest(),
            payment_secret=os.urandom(32).hex(), created_at=int(time.time()), expiry_s=600,
            node_key_hex=node_key,
            description_hash=hashlib.sha256(description.encode()).hexdigest(),
        )
        out.append(nip57.build_zap_receipt(
            PROVIDER, zap_request=request, description=description, bolt11_invoice=bolt11,
            paid_at=int(time.time()), preimage=preimage.hex(),
        ))
    return out




def lnurl_endpoint(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={
        "tag": "payRequest", "callback": "https://zaps.example/cb", "minSendable": 1_000,
        "maxSendable": 10**9, "metadata": json.dumps([["text/plain", "zap"]]),
        "allowsNostr": True, "nostrPubkey": PROVIDER.public_hex,
    })


async def intake_rates(
    directory: Path, seconds: float, events: list[Event]
) -> tuple[float, float, float]:
    db = await Database.open(directory / "zaps.db")
    http = httpx.AsyncClient(transport=httpx.MockTransport(lnurl_endpoint))
    try:
        ledger = Ledger(db, Limits(daily_free_msat=0, daily_free_jobs=0))
        intake = ZapIntake(
            agent_pubkey=AGENT.public_hex,
            address=AgentAddress(ADDRESS, LnurlClient(http)),
            ledger=ledger,
            intake=Intake(db),
        )

        async def handle(i: int) -> None:
            result = await intake.handle(events[i])
            assert result.outcome is ZapOutcome.POOL, result

        async def raw(i: int) -> None:
            await ledger.credit_pool(
                1_000, f"raw:{i}", source="zap", zapper_pubkey=AGENT.public_hex
            )

        intake_per_s = await async_rate(seconds, 64, len(events), handle)
        counted = sum(1 for r in intake.results if r.first_time)
        raw_per_s = await async_rate(seconds, 64, len(events), raw)

        async def replay(i: int) -> None:
            await intake.handle(events[i % counted])

        replay_per_s = await async_rate(seconds, 64, 10**9, replay)
        return intake_per_s, raw_per_s, replay_per_s
    finally:
        await http.aclose()
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    sample = receipts(200)
    raw_sample = [e.to_dict() for e in sample]

    def validate(i: int) -> None:
        nip57.validate_zap_receipt(
            sample[i % len(sample)], provider_pubkey=PROVIDER.public_hex,
            recipient_pubkey=AGENT.public_hex,
        )

    validate_per_s = rate(args.seconds, validate)
    verify_per_s = rate(args.seconds, lambda i: Event.from_dict(raw_sample[i % len(raw_sample)]))
    print(f"validate {validate_per_s:9.0f} /s   (Event.from_dict alone: {verify_per_s:.0f} /s)")
    events = receipts(int(400 * args.seconds))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        intake_per_s, raw_per_s, replay_per_s = asyncio.run(
            intake_rates(Path(tmp), args.seconds, events)
        )
    print(f"intake   {intake_per_s:9.0f} /s   (credit_pool alone: {raw_per_s:.0f} /s)")
    print(f"replay   {replay_per_s:9.0f} /s   (receipts already counted: validated, no-op)")
    print(
        f"validate_per_s={validate_per_s:.0f} verify_per_s={verify_per_s:.0f} "
        f"intake_per_s={intake_per_s:.0f} raw_credit_per_s={raw_per_s:.0f} "
        f"replay_per_s={replay_per_s:.0f}"
    )


if __name__ == "__main__":
    main()
