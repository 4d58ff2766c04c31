"""Validation of money amounts: integer millisatoshis only."""

from __future__ import annotations

from storage.errors import InvalidAmount, InvalidInput

MAX_MSAT = 21_000_000 * 100_000_000 * 1000
"""21 million bitcoin in msat: no amount can be larger (fits in SQLite's 64-bit integers)."""


def positive_msat(value: object, name: str = "amount_msat") -> int:
    """``value`` if it is an ``int`` (not ``bool``) in 1..MAX_MSAT, else ``InvalidAmount``."""
    return _msat(value, name, allow_zero=False)


def nonneg_msat(value: object, name: str = "amount_msat") -> int:
    """Like ``positive_msat`` but zero is allowed."""
    return _msat(value, name, allow_zero=True)


def _msat(value: object, name: str, *, allow_zero: bool) -> int:
    if type(value) is not int:
        raise InvalidAmount(f"{name} must be an int number of msat, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        rule = "must not be negative" if allow_zero else "must be positive"
        raise InvalidAmount(f"{name} {rule}, got {value}")
    if value > MAX_MSAT:
        raise InvalidAmount(f"{name} is larger than all bitcoin: {value}")
    return value


def whole_sats_up(msat: int) -> int:
    """``msat`` rounded up to a whole number of sats, in msat (a multiple of 1000).

    Invoices are for whole sats (most wallets refuse msat fractions): a job's invoice is for
    ``whole_sats_up(work_amount_msat)``; what the rounding adds comes back at settlement."""
    return -(-msat // 1000) * 1000


def text_id(value: object, name: str, max_len: int = 512) -> str:
    """A non-empty printable string id of bounded length (event id, pubkey, key...)."""
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvalidInput(f"{name} must be a non-empty string of at most {max_len} characters")
    if not value.isprintable():
        raise InvalidInput(f"{name} must be printable")
    return value
