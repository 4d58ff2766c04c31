"""LNURL-pay client against LNbits' own lightning addresses, plus LUD-01/16/21 details."""

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bot.wallets.base import LnurlError
from bot.wallets.bolt11 import encode_invoice
from bot.wallets.lnurl import (
    MAX_RESPONSE_BYTES,
    LnurlClient,
    decode_lnurl,
    encode_lnurl,
    lightning_address_url,
)
from tests.fixtures.lnbits import LnbitsAccount, LnbitsServer

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "lnurl_examples.json").read_text())


def local_client(http: httpx.AsyncClient, server: LnbitsServer) -> LnurlClient:
    return LnurlClient(http, insecure_hosts=frozenset({server.url.removeprefix("http://")}))


async def test_invoice_for_lightning_address(
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    account = lnbits_new_wallet("asker")
    client = local_client(http, lnbits_server)
    got = await client.invoice_for_address(account.lightning_address, 5_000, network="bc")
    assert got.invoice.amount_msat == 5_000
    assert got.bolt11.startswith("lnbc")


async def test_checks_refuse_bad_invoices(
    http: httpx.AsyncClient,
    lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    account = lnbits_new_wallet("asker")
    client = local_client(http, lnbits_server)
    pay = await client.fetch_pay_request(client.address_url(account.lightning_address))
    # LNbits rounds a sub-satoshi amount down: the invoice no longer matches the amount
    with pytest.raises(LnurlError) as info:
        await client.fetch_invoice(pay, 5_500)
    assert info.value.code == "amount_mismatch"
    # an invoice committing to other metadata than the service advertised
    tampered = dataclasses.replace(pay, metadata='[["text/plain", "something else"]]')
    with pytest.raises(LnurlError) as info:
        await client.fetch_invoice(tampered, 5_000)
    assert info.value.code == "description_hash_mismatch"
    with pytest.raises(LnurlError) as info:
        await client.fetch_invoice(pay, 5_000, network="bcrt")
    assert info.value.code == "wrong_network"
    with pytest.raises(LnurlError) as info:
        await client.fetch_invoice(pay, 0)
    assert info.value.code == "out_of_range"
    with pytest.raises(LnurlError) as info:  # LNbits' core address has no allowsNostr
        await client.fetch_invoice(pay, 5_000, zap_request_json="{}")
    assert info.value.code == "no_zaps"
    host = lnbits_server.url.removeprefix("http://")
    with pytest.raises(LnurlError) as info:
        await client.invoice_for_address(f"nosuchuser@{host}", 5_000)
    assert info.value.code == "service_error"


async def test_untrusted_hosts_are_refused(
    http: httpx.AsyncClient, lnbits_server: LnbitsServer,
    lnbits_new_wallet: Callable[..., LnbitsAccount],
) -> None:
    account = lnbits_new_wallet("asker")
    strict = LnurlClient(http)  # nothing allow-listed: the local LNbits is out of bounds
    for url in (
        f"http://{account.lightning_address.split('@')[1]}/.well-known/lnurlp/x",
        "https://127.0.0.1/.well-known/lnurlp/x",
        "https://[::1]/.well-known/lnurlp/x",
        "https://localhost/.well-known/lnurlp/x",
        "ftp://example.com/x",
    ):
        with pytest.raises(LnurlError) as info:
            await strict.fetch_pay_request(url)
        assert info.value.code == "bad_address"
    with pytest.raises(LnurlError):
        await strict.invoice_for_address(account.lightning_address, 5_000)


def test_lightning_address_mapping() -> None:
    example = VECTORS["lud16_example"]
    assert lightning_address_url(example["address"]) == example["url"]
    assert lightning_address_url("bob@abc.onion") == "http://abc.onion/.well-known/lnurlp/bob"
    for bad in ("", "bob", "a@b@c", "bob@localhost", "b o b@example.com", "bob@exa mple.com"):
        with pytest.raises(LnurlError):
            lightning_address_url(bad)


def test_lnurl_bech32() -> None:
    example = VECTORS["lud01_example"]
    assert decode_lnurl(example["lnurl"]) == example["decoded_url"]
    assert encode_lnurl(example["decoded_url"]) == example["reencoded_lowercase"]
    zap = VECTORS["nip57_zap_request_lnurl_tag"]
    assert decode_lnurl(zap["lnurl"]) == zap["decoded_url"]
    with pytest.raises(LnurlError):
        decode_lnurl(example["lnurl"][:-1] + "Q")


async def test_verify_and_oversized_answers() -> None:
    paid_hash = hashlib.sha256(b"paid").hexdigest()
    paid_pr = encode_invoice(
        network="bc", amount_msat=21_000, payment_hash=paid_hash,
        payment_secret=os.urandom(32).hex(), created_at=1_800_000_000, expiry_s=600,
        node_key_hex=os.urandom(32).hex(), description="zap",
    )
    answers: dict[str, object] = {
        "/v/paid": {"status": "OK", "settled": True, "preimage": "aa" * 32, "pr": paid_pr},
        "/v/open": {"status": "OK", "settled": False, "preimage": None},
        "/v/gone": {"status": "ERROR", "reason": "Not found"},
        "/v/garbled": {"status": "OK", "settled": False, "preimage": None, "pr": "lnbc1"},
        "/v/odd": {"status": "OK", "settled": False, "preimage": None, "pr": 7},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/big":
            return httpx.Response(200, content=b" " * (MAX_RESPONSE_BYTES + 1))
        return httpx.Response(200, json=answers[request.url.path])

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = LnurlClient(http)
        paid = await client.verify("https://service.example/v/paid", payment_hash=paid_hash)
        assert paid.settled and paid.preimage == "aa" * 32
        assert paid.invoice is not None and paid.invoice.payment_hash == paid_hash
        assert paid.invoice.amount_msat == 21_000 and paid.invoice.bolt11 == paid_pr
        open_answer = await client.verify("https://service.example/v/open")
        assert not open_answer.settled and open_answer.invoice is None
        # the pr of another payment than the one asked about is refused
        with pytest.raises(LnurlError) as info:
            await client.verify("https://service.example/v/paid", payment_hash="00" * 32)
        assert info.value.code == "hash_mismatch"
        for path in ("/v/garbled", "/v/odd"):
            with pytest.raises(LnurlError) as info:
                await client.verify(f"https://service.example{path}")
            assert info.value.code == "malformed"
        with pytest.raises(LnurlError) as info:
            await client.verify("https://service.example/v/gone")
        assert info.value.code == "service_error"
        with pytest.raises(LnurlError) as info:
            await client.fetch_pay_request("https://service.example/big")
        assert info.value.code == "malformed"


GOOD_PAY = {
    "tag": "payRequest",
    "callback": "https://service.example/cb",
    "minSendable": 1_000,
    "maxSendable": 10_000,
    "metadata": '[["text/plain", "x"]]',
}


@pytest.mark.parametrize(
    "changes",
    [
        {"tag": "withdrawRequest"},
        {"callback": None},
        {"callback": "http://service.example/cb"},
        {"callback": "https://10.0.0.1/cb"},
        {"metadata": 5},
        {"minSendable": 20_000},
        {"minSendable": 0},
        {"maxSendable": True},
        {"maxSendable": 1.5},
        {"nostrPubkey": "abc", "allowsNostr": True},
        {"status": "ERROR", "reason": "nope"},
    ],
)
async def test_malformed_pay_requests_are_typed_errors(changes: dict[str, object]) -> None:
    body = {**GOOD_PAY, **changes}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = LnurlClient(http)
        with pytest.raises(LnurlError):
            await client.fetch_pay_request("https://service.example/p")


async def test_well_formed_pay_request_with_nostr() -> None:
    body = {**GOOD_PAY, "allowsNostr": True, "nostrPubkey": "AB" * 32, "commentAllowed": 20}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        pay = await LnurlClient(http).fetch_pay_request("https://service.example/p")
    assert pay.allows_nostr and pay.nostr_pubkey == "ab" * 32
    assert (pay.min_sendable_msat, pay.max_sendable_msat) == (1_000, 10_000)
    assert pay.comment_allowed == 20


@pytest.mark.parametrize(
    "body",
    [
        b'{"tag":"payRequest","callback":' + b"[" * 2000 + b"]" * 2000 + b"}",
        b'{"tag":"payRequest","minSendable":' + b"9" * 5000 + b"}",
        b'{"tag":"payRequest","callback":"\\udfff"}',
    ],
)
async def test_answers_json_cannot_hold_are_malformed(body: bytes) -> None:
    # found by the fuzz suite on the code before issue 12: RecursionError escaped _get_json
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(LnurlError) as info:
            await LnurlClient(http).fetch_pay_request("https://service.example/p")
        assert info.value.code == "malformed"


@pytest.mark.parametrize("callback", ["https://pay.example/\b", "https://pay.example/a b",
                                      "https://pay.example/\x7f", "https://pay.example/\u0000"])
async def test_a_callback_with_control_characters_is_a_bad_address(callback: str) -> None:
    # found by the fuzz campaign: httpx raised InvalidURL (not an HTTPError) out of the client
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={**GOOD_PAY, "callback": callback})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(LnurlError) as info:
            await LnurlClient(http).fetch_pay_request("https://service.example/p")
        assert info.value.code == "bad_address"
