"""The one way in for JSON from outside: relay frames, events, NIP-47 payloads, zap requests
inside receipts, NIP-11 documents, LNURL and lightning-address answers, LNbits answers and
webhooks, AI endpoint bodies.

``load_json(raw, max_chars=..., error=..., what=...)`` parses a document and refuses, with
``error(message)`` — the calling layer's own exception class, so every layer keeps its typed
errors — anything a well-behaved peer never sends and Python's ``json`` would let through or
turn into an untyped exception:

- more than ``max_chars`` characters (bytes, for ``bytes`` input): each caller states its cap;
- ``bytes`` that are not strict UTF-8 (``json.loads`` would also take UTF-16/32 and encoded
  surrogates);
- an integer of more than :data:`MAX_INT_DIGITS` digits (Python refuses more than 4,300 with a
  bare ``ValueError``; no amount, timestamp or limit needs more than 20);
- ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON);
- arrays and objects nested more than :data:`MAX_DEPTH` deep (deeper ones raise
  ``RecursionError`` in the parser, or later in whatever walks the value);
- a lone surrogate in any string or key (``"\\udfff"`` decodes to text that no UTF-8 encoder can
  write: signing it, logging it or storing it fails later, far from the input).

Each check costs a C-speed scan of the text; the slower exact checks run only when the scan finds
something to check (a long run of digits, a surrogate escape, more brackets than the depth cap).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Final

MAX_INT_DIGITS: Final = 40
MAX_DEPTH: Final = 32

ErrorFactory = Callable[[str], Exception]

_LONG_DIGITS: Final = re.compile(f"[0-9]{{{MAX_INT_DIGITS + 1}}}")
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


class _Refused(Exception):
    """Raised inside the parser's hooks; turned into the caller's error."""


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"integer longer than {MAX_INT_DIGITS} digits")
    return int(digits)


def _no_constant(name: str) -> float:
    raise _Refused(f"{name} is not JSON")


_PLAIN: Final = json.JSONDecoder(parse_constant=_no_constant)
_BOUNDED: Final = json.JSONDecoder(parse_int=_bounded_int, parse_constant=_no_constant)


def load_json(raw: str | bytes, *, max_chars: int, error: ErrorFactory, what: str) -> object:
    """Parse ``raw`` or raise ``error(message)``; see the module docstring for what is refused."""
    if not isinstance(raw, str | bytes):
        raise error(f"{what} is not text")
    if len(raw) > max_chars:
        raise error(f"{what} is larger than {max_chars} characters")
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{what} is not UTF-8") from exc
    else:
        text = raw
        if not text.isascii() and _SURROGATE.search(text):
            raise error(f"{what} holds a lone surrogate")
    decoder = _BOUNDED if _LONG_DIGITS.search(text) else _PLAIN
    try:
        value: object = decoder.decode(text)
    except _Refused as exc:
        raise error(f"{what}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise error(f"{what} is not JSON") from exc
    check_strings = _SURROGATE_ESCAPE.search(text) is not None
    if check_strings or text.count("[") + text.count("{") > MAX_DEPTH:
        problem = _walk(value, check_strings)
        if problem is not None:
            raise error(f"{what}: {problem}")
    return value


def _walk(value: object, check_strings: bool) -> str | None:
    """The first problem in a parsed value (too deep, a lone surrogate), level by level
    (no recursion; one list comprehension per container keeps a 1 MiB document in tens of ms)."""
    level: list[object] = [value]
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH and any(isinstance(item, list | dict) for item in level):
            return f"nested deeper than {MAX_DEPTH} levels"
        below: list[object] = []
        for item in level:
            if isinstance(item, str):
                if _SURROGATE.search(item):
                    return "a string holds a lone surrogate"
                continue
            children: Iterable[object]
            if isinstance(item, dict):
                children = [*item, *item.values()] if check_strings else item.values()
            elif isinstance(item, list):
                children = item
            else:
                continue
            below += [c for c in children if c.__class__ is list or c.__class__ is dict
                      or (check_strings and c.__class__ is str)]
        level = below
    return None
