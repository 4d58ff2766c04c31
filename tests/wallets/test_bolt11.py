"""bolt11 decoding and checks: every network, amounts, description hash, bad input."""

import contextlib
import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.wallets.base import InvalidInvoice
from bot.wallets.bolt11 import check_payable, decode_invoice, encode_invoice

NOW = 1_800_000_000


def make(network: str = "bcrt", amount_msat: int | None = 21_000, **kw: object) -> str:
    args: dict[str, object] = {
        "network": network,
        "amount_msat": amount_msat,
        "payment_hash": hashlib.sha256(b"preimage").hexdigest(),
        "payment_secret": os.urandom(32).hex(),
        "created_at": NOW,
        "expiry_s": 600,
        "node_key_hex": os.urandom(32).hex(),
        "description": "a question",
    }
    args.update(kw)
    return encode_invoice(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("network", "prefix"),
    [("bc", "lnbc"), ("tb", "lntb"), ("tbs", "lntbs"), ("bcrt", "lnbcrt")],
)
def test_networks_round_trip(network: str, prefix: str) -> None:
    text = make(network)
    assert text.startswith(prefix)
    decoded = decode_invoice(text)
    assert decoded.network == network
    assert decoded.amount_msat == 21_000
    assert decoded.payment_hash == hashlib.sha256(b"preimage").hexdigest()
    assert decoded.description == "a question"
    assert decoded.expires_at == NOW + 600


def test_sub_satoshi_amount_and_uri_prefix() -> None:
    decoded = decode_invoice("lightning:" + make(amount_msat=1).upper())
    assert decoded.amount_msat == 1


def test_description_hash() -> None:
    digest = hashlib.sha256(b'[["text/plain","x"]]').hexdigest()
    decoded = decode_invoice(make(description=None, description_hash=digest))
    assert decoded.description is None
    assert decoded.description_hash == digest
    assert decoded.matches_description('[["text/plain","x"]]')
    assert not decoded.matches_description('[["text/plain","y"]]')


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "lnbc1",
        "lnbc" + "q" * 5000,
        # one character changed: bech32 checksum fails
        "x",
    ],
)
def test_malformed_is_typed_error(text: str) -> None:
    if text == "x":
        good = make()
        text = good[:-8] + ("q" if good[-8] != "q" else "p") + good[-7:]
    with pytest.raises(InvalidInvoice) as info:
        decode_invoice(text)
    assert info.value.code == "malformed"


def test_non_string_is_typed_error() -> None:
    with pytest.raises(InvalidInvoice):
        decode_invoice(123)  # type: ignore[arg-type]


def test_check_payable() -> None:
    decoded = decode_invoice(make())
    check_payable(decoded, amount_msat=21_000, network="bcrt", now=NOW)
    cases = [
        ({"amount_msat": 20_000, "network": "bcrt", "now": NOW}, "amount_mismatch"),
        ({"amount_msat": 21_000, "network": "bc", "now": NOW}, "wrong_network"),
        ({"amount_msat": 21_000, "network": "bcrt", "now": NOW + 600}, "expired"),
        ({"amount_msat": 21_000, "network": "bcrt", "now": NOW + 590}, "expired"),
    ]
    for kwargs, code in cases:
        with pytest.raises(InvalidInvoice) as info:
            check_payable(decoded, **kwargs)  # type: ignore[arg-type]
        assert info.value.code == code


def test_amountless_invoice_is_not_payable_for_a_refund() -> None:
    amountless = decode_invoice(make(amount_msat=None))
    assert amountless.amount_msat is None
    with pytest.raises(InvalidInvoice) as info:
        check_payable(amountless, amount_msat=21_000, network="bcrt", now=NOW)
    assert info.value.code == "no_amount"


def test_encode_needs_exactly_one_description() -> None:
    with pytest.raises(InvalidInvoice):
        make(description=None)


VALID = make()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_is_never_a_crash(text: str) -> None:
    with contextlib.suppress(InvalidInvoice):
        decode_invoice(text)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.sampled_from("qpzry9x8gf2tvdw0"))
def test_mutated_invoices_decode_or_fail_typed(position: int, char: str) -> None:
    mutated = VALID[:position] + char + VALID[position + 1 :]
    try:
        decoded = decode_invoice(mutated)
    except InvalidInvoice:
        return
    assert mutated == VALID or decoded.network in {"bc", "tb", "tbs", "bcrt"}
