"""NIP-47 hex fields use the shared ``is_hex`` check: a trailing newline (which a ``$`` regex
lets through) is refused, not stored as part of a payment hash or a pubkey."""

import pytest

from bot.nostr.nip47 import Nip47Error, parse_nwc_uri, parse_transaction

HASH = "ab" * 32


def test_payment_hash_with_trailing_newline_is_refused() -> None:
    assert parse_transaction({"payment_hash": HASH, "amount": 1000}).payment_hash == HASH
    with pytest.raises(Nip47Error):
        parse_transaction({"payment_hash": HASH + "\n", "amount": 1000})


def test_preimage_with_trailing_newline_is_refused() -> None:
    with pytest.raises(Nip47Error):
        parse_transaction({"payment_hash": HASH, "preimage": "cd" * 32 + "\n"})


def test_wallet_pubkey_with_trailing_newline_is_refused() -> None:
    query = f"?relay=wss%3A%2F%2Fr.example&secret={'11' * 32}"
    assert parse_nwc_uri(f"nostr+walletconnect://{HASH}{query}").wallet_pubkey == HASH
    with pytest.raises(Nip47Error):
        parse_nwc_uri(f"nostr+walletconnect://{HASH}\n{query}")
