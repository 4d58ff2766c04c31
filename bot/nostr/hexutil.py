"""Small validators shared by the codecs: lowercase fixed-length hex strings."""

from typing import Final

_HEX: Final = frozenset("0123456789abcdef")


def is_hex(value: object, length: int) -> bool:
    """True when ``value`` is a lowercase hex string of exactly ``length`` characters."""
    return isinstance(value, str) and len(value) == length and _HEX.issuperset(value)
