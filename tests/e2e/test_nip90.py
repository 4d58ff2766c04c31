"""NIP-90 end to end: the agent as its own process, a real relay, LNbits, and nostr-sdk as the
customer (its event builder for the kind-5050 requests, its own NIP-44 for encrypted params).

One agent with a pool and an allowance of one free job a day: the customer's first request is
free, the second — encrypted — is gated, paid from the customer's LNbits wallet with the bolt11
of the ``payment-required`` feedback, and answered encrypted. Each step is checked in the ledger
file, and ``timmy ledger check`` passes at the end.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import timedelta

import nostr_sdk as sdk

from tests.e2e.agent_process import WalletSetup
from tests.e2e.conftest import AgentFactory
from tests.e2e.ledger_view import LedgerView
from tests.e2e.lightning import LnbitsUser
from tests.e2e.money import fund_pool, job_in
from tests.fixtures.relay import RelayProcess

WAIT_S = 20.0


async def _reply(client: sdk.Client, customer: sdk.Keys, request: sdk.Event, kind: int,
                 status: str | None = None) -> sdk.Event:
    """The agent's event of ``kind`` (and feedback ``status``) about ``request``."""
    flt = (sdk.Filter().kinds([sdk.Kind(kind)]).pubkey(customer.public_key())
           .event(request.id()))
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        events = await client.fetch_events(sdk.ReqTarget.auto([flt]), timedelta(seconds=2))
        for event in events:
            if status is None or ["status", status] in [t[:2] for t in _tags(event)]:
                return event
        await asyncio.sleep(0.2)
    raise AssertionError(f"no kind {kind} {status or ''} for {request.id().to_hex()}")


def _tags(event: sdk.Event) -> list[list[str]]:
    return [t.to_vec() for t in event.tags()]


async def test_free_then_encrypted_paid_job(
        agent_factory: AgentFactory, e2e_relays: list[RelayProcess],
        agent_lnbits: Callable[[], tuple[WalletSetup, LnbitsUser]],
        lnbits_user: Callable[..., LnbitsUser]) -> None:
    relay = e2e_relays[0].url
    agent = agent_factory([relay], agent_lnbits()[0],
                          limits={"daily_free_msat": 50_000, "daily_free_jobs": 1})
    await fund_pool(agent.db_path, 1_000_000, f"e2e:nip90:{agent.pubkey_hex[:8]}")
    view = LedgerView(agent.db_path)
    payer = lnbits_user("nip90-customer", 10_000)
    provider = sdk.PublicKey.parse(agent.pubkey_hex)
    customer = sdk.Keys.generate()
    client = sdk.Client()
    await client.add_relay(sdk.RelayUrl.parse(relay))
    await client.connect()
    try:
        free = (sdk.EventBuilder(sdk.Kind(5050), "")
                .tags([sdk.Tag.parse(["i", "why is the sky blue?", "text"]),
                       sdk.Tag.public_key(provider)]).finalize(customer))
        await client.send_event(free)
        result = await _reply(client, customer, free, 6050)
        assert result.content() and ["i", "why is the sky blue?", "text"] in _tags(result)
        job = await job_in(view, free.id().to_hex(), "done")
        assert job["serve"] == "free" and ["amount", "0"] in _tags(result)

        params = json.dumps([["i", "and why are sunsets red?", "text"]])
        secret = sdk.nip44_encrypt(customer.secret_key(), provider, params, sdk.Nip44Version.V2)
        paid = (sdk.EventBuilder(sdk.Kind(5050), secret)
                .tags([sdk.Tag.public_key(provider), sdk.Tag.parse(["encrypted"])])
                .finalize(customer))
        await client.send_event(paid)
        quote = await _reply(client, customer, paid, 7000, "payment-required")
        amount = next(t for t in _tags(quote) if t[0] == "amount")
        await payer.pay(amount[2])
        result = await _reply(client, customer, paid, 6050)
        assert ["encrypted"] in _tags(result) and not [t for t in _tags(result) if t[0] == "i"]
        answer = sdk.nip44_decrypt(customer.secret_key(), provider, result.content())
        assert answer
        job = await job_in(view, paid.id().to_hex(), "done")
        assert job["serve"] == "gate" and job["paid_msat"] == int(amount[1])
        assert ["amount", str(job["charged_msat"])] in _tags(result)
    finally:
        await client.shutdown()
    agent.ledger_check()
