"""NIP-47 pure code: URI forms, info event, payloads, error codes (tests/vectors/nip47_examples)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.nostr import nip47
from bot.nostr.keys import Keys
from bot.nostr.nip47 import Encryption, ErrorCode, Nip47Error

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "nip47_examples.json").read_text()
)


def test_uri_from_spec_parses() -> None:
    uri = nip47.parse_nwc_uri(VECTORS["connection_uri"])
    parsed = VECTORS["parsed"]
    assert uri.wallet_pubkey == parsed["wallet_service_pubkey"]
    assert list(uri.relays) == parsed["relays"]
    assert uri.secret == parsed["secret"]
    assert uri.lud16 is None


def test_uri_without_slashes_parses_the_same() -> None:
    with_slashes = VECTORS["connection_uri"]
    without = with_slashes.replace("nostr+walletconnect://", "nostr+walletconnect:")
    assert nip47.parse_nwc_uri(without) == nip47.parse_nwc_uri(with_slashes)


def test_uri_round_trip_keeps_every_relay_and_lud16() -> None:
    uri = nip47.NwcUri("ab" * 32, ("ws://127.0.0.1:1", "wss://r.example/x"), "cd" * 32, "a@b.c")
    assert nip47.parse_nwc_uri(uri.to_uri()) == uri


def test_uri_repr_hides_secret() -> None:
    uri = nip47.parse_nwc_uri(VECTORS["connection_uri"])
    assert VECTORS["parsed"]["secret"] not in repr(uri)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "https://example.com",
        "nostr+walletconnect://zz?relay=wss%3A%2F%2Fr&secret=" + "11" * 32,
        "nostr+walletconnect://" + "ab" * 32,
        "nostr+walletconnect://" + "ab" * 32 + "?secret=" + "11" * 32,
        "nostr+walletconnect://" + "ab" * 32 + "?relay=wss%3A%2F%2Fr",
        "nostr+walletconnect://" + "ab" * 32 + "?relay=https%3A%2F%2Fr&secret=" + "11" * 32,
        "nostr+walletconnect://" + "ab" * 32 + "?relay=wss%3A%2F%2Fr&secret=12",
        "nostr+walletconnect://" + "ab" * 32 + "?relay=wss%3A%2F%2Fr&secret=" + "11" * 32
        + "&secret=" + "22" * 32,
    ],
)
def test_bad_uris_are_rejected_without_leaking_the_secret(bad: str) -> None:
    with pytest.raises(Nip47Error) as info:
        nip47.parse_nwc_uri(bad)
    assert "11" * 32 not in str(info.value)


def test_a_uri_with_a_lone_surrogate_is_a_typed_error() -> None:
    # found by the fuzz suite: parsed, then to_uri() raised UnicodeEncodeError (an environment
    # variable holding bad bytes decodes to lone surrogates)
    for bad in ("wss://relay.\udfffexample", "wss://relay.example&lud16=a\ud800@b.c"):
        with pytest.raises(Nip47Error, match="not valid text"):
            nip47.parse_nwc_uri(f"nostr+walletconnect://{'ab' * 32}?relay={bad}"
                                f"&secret={'11' * 32}")


@pytest.mark.parametrize("relay", ["wss://[", "wss://[]"])
def test_finding_3_a_broken_ipv6_relay_is_a_typed_error(relay: str) -> None:
    # the campaign's inputs: urllib raises a plain ValueError on both
    with pytest.raises(Nip47Error, match="relay"):
        nip47.parse_nwc_uri(f"nostr+walletconnect://{'ab' * 32}?relay={relay}&secret={'11' * 32}")


HUGE = "1" * 4301  # one digit over Python's int-to-string limit


@pytest.mark.parametrize(
    ("decode", "payload"),
    [
        (nip47.decode_response,
         '{"result_type":"get_balance","error":null,"result":{"balance":' + HUGE + "}}"),
        (nip47.decode_notification,
         '{"notification_type":"payment_received","notification":{"amount":' + HUGE + "}}"),
        (nip47.decode_request, '{"method":"pay_invoice","params":{"amount":' + HUGE + "}}"),
    ],
)
def test_finding_2_a_huge_integer_is_a_typed_error(
        decode: Callable[[str], object], payload: str) -> None:
    with pytest.raises(Nip47Error, match="integer longer than"):
        decode(payload)


def test_info_event_example_tags_choose_nip44() -> None:
    event = VECTORS["info_event_example"]
    info = nip47.parse_info(event["content"], event["tags"])
    assert info.encryptions == {Encryption.NIP44_V2, Encryption.NIP04}
    assert info.preferred_encryption() is Encryption.NIP44_V2
    assert "pay_invoice" in info.methods and "make_invoice" in info.methods
    assert info.notifications == {"payment_received", "payment_sent"}


def test_info_without_encryption_tag_means_nip04() -> None:
    info = nip47.parse_info("pay_invoice get_balance", [])
    assert info.preferred_encryption() is Encryption.NIP04


def test_info_with_only_unknown_encryption_is_rejected() -> None:
    with pytest.raises(Nip47Error):
        nip47.parse_info("pay_invoice", [["encryption", "nip99"]])


def test_request_encryption_tag() -> None:
    assert nip47.request_encryption([]) is Encryption.NIP04
    assert nip47.request_encryption([["encryption", "nip44_v2"]]) is Encryption.NIP44_V2
    assert nip47.request_encryption([["encryption", "rot13"]]) is None


def test_every_spec_error_code_is_mapped() -> None:
    for code in VECTORS["error_codes"]:
        assert ErrorCode.from_wire(code).value == code
    assert ErrorCode.from_wire("SOMETHING_NEW") is ErrorCode.OTHER
    assert ErrorCode.from_wire(42) is ErrorCode.OTHER


def test_kinds_match_spec() -> None:
    kinds = VECTORS["kinds"]
    assert kinds["info"] == nip47.INFO_KIND
    assert kinds["request"] == nip47.REQUEST_KIND
    assert kinds["response"] == nip47.RESPONSE_KIND
    assert kinds["notification_nip44"] == nip47.NOTIFICATION_KIND
    assert kinds["notification_nip04_legacy"] == nip47.LEGACY_NOTIFICATION_KIND


def test_request_round_trip() -> None:
    text = nip47.encode_request("pay_invoice", {"invoice": "lnbc1..."})
    req = nip47.decode_request(text)
    assert req.method == "pay_invoice" and req.params == {"invoice": "lnbc1..."}


def test_response_result_and_error_round_trip() -> None:
    ok = nip47.decode_response(nip47.encode_result("get_balance", {"balance": 5}))
    assert ok.error is None and ok.result == {"balance": 5}
    err = nip47.decode_response(
        nip47.encode_error("pay_invoice", ErrorCode.INSUFFICIENT_BALANCE, "no funds")
    )
    assert err.result is None and err.error is not None
    assert err.error.code is ErrorCode.INSUFFICIENT_BALANCE and err.error.message == "no funds"


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[]",
        '{"result_type": 5}',
        '{"result_type": "x", "result": null, "error": null}',
        '{"result_type": "x", "result": [1]}',
        '{"result_type": "x", "error": "boom"}',
        "[" * 100_000,
    ],
)
def test_bad_responses_are_typed_errors(bad: str) -> None:
    with pytest.raises(Nip47Error):
        nip47.decode_response(bad)


def test_notification_and_transaction() -> None:
    tx = nip47.Transaction(
        payment_hash="aa" * 32,
        amount_msat=21_000,
        state=nip47.TransactionState.SETTLED,
        invoice="lnbcrt1...",
        preimage="bb" * 32,
        settled_at=10,
    )
    text = nip47.encode_notification("payment_received", nip47.transaction_to_json(tx))
    note = nip47.decode_notification(text)
    assert note.notification_type == "payment_received"
    assert nip47.parse_transaction(note.notification) == tx


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"payment_hash": "zz"},
        {"payment_hash": "aa" * 32, "amount": -1},
        {"payment_hash": "aa" * 32, "amount": 1.5},
        {"payment_hash": "aa" * 32, "amount": True},
        {"payment_hash": "aa" * 32, "state": "weird"},
        {"payment_hash": "aa" * 32, "preimage": "12"},
    ],
)
def test_bad_transactions_are_typed_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(Nip47Error):
        nip47.parse_transaction(bad)


def test_client_pubkey_derived_from_secret() -> None:
    uri = nip47.parse_nwc_uri(VECTORS["connection_uri"])
    assert Keys.from_hex(uri.secret).public_hex == VECTORS["derived_client_pubkey_from_secret"]


@pytest.mark.parametrize("scheme", list(Encryption))
def test_request_response_notification_events_round_trip(scheme: Encryption) -> None:
    client, wallet = Keys.generate(), Keys.generate()
    req = nip47.request_event(client, wallet.public_hex, scheme, "get_balance", {})
    assert req.kind == nip47.REQUEST_KIND
    assert nip47.request_encryption(req.tags) is scheme
    assert req.first_tag("p") == wallet.public_hex
    opened = nip47.decode_request(nip47.unseal(wallet, client.public_hex, scheme, req.content))
    assert opened.method == "get_balance"
    assert nip47.scheme_of_content(req.content) is scheme

    payload = nip47.encode_result("get_balance", {"balance": 7})
    resp = nip47.response_event(wallet, client.public_hex, req.id, scheme, payload)
    assert resp.first_tag("e") == req.id and resp.first_tag("p") == client.public_hex
    decoded = nip47.decode_response(nip47.unseal(client, wallet.public_hex, scheme, resp.content))
    assert decoded.result == {"balance": 7}

    note = nip47.notification_event(
        wallet, client.public_hex, scheme, nip47.encode_notification("payment_received", {})
    )
    expected_kind = (
        nip47.NOTIFICATION_KIND if scheme is Encryption.NIP44_V2
        else nip47.LEGACY_NOTIFICATION_KIND
    )
    assert note.kind == expected_kind


def test_unseal_with_the_wrong_key_is_a_typed_error() -> None:
    client, wallet = Keys.generate(), Keys.generate()
    for scheme in Encryption:
        req = nip47.request_event(client, wallet.public_hex, scheme, "get_info", {})
        with pytest.raises(Nip47Error):
            nip47.unseal(Keys.generate(), client.public_hex, scheme, req.content)
        with pytest.raises(Nip47Error):
            nip47.unseal(wallet, client.public_hex, scheme, "garbage")


def test_info_event_round_trip() -> None:
    wallet = Keys.generate()
    ev = nip47.info_event(wallet, ["pay_invoice"], [Encryption.NIP04], ["payment_received"])
    info = nip47.parse_info(ev.content, ev.tags)
    assert info.preferred_encryption() is Encryption.NIP04
    legacy = nip47.info_event(wallet, ["pay_invoice"], [])
    assert not legacy.tags
