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

Integers are bounded by the parser's integer hook as it meets them (a handful per document: a
scan of the whole text for long runs of digits cost five times the parse). The other checks are
C-speed scans of the text; the exact checks run only when a scan finds something to check (a
surrogate escape, more brackets than the depth cap), and are C-speed passes too: no Python loop
runs over the document's values.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable
from typing import Final

MAX_INT_DIGITS: Final = 40
MAX_DEPTH: Final = 32

ErrorFactory = Callable[[str], Exception]

_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_STRING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS_ONLY: Final = {c: None for c in range(128)} | {ord("["): "[", ord("{"): "[",
                                                          ord("]"): "]", ord("}"): "]"}


class _Refused(Exception):
    """Raised inside the parser's hooks; turned into the caller's error."""


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"integer longer than {MAX_INT_DIGITS} digits")
    return int(digits)


def _no_constant(name: str) -> float:
    raise _Refused(f"{name} is not JSON")


_DECODER: Final = json.JSONDecoder(parse_int=_bounded_int, parse_constant=_no_constant)


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
    collecting = gc.isenabled()
    gc.disable()  # a document of many containers would trigger a collection every 700 of them
    try:
        value: object = _DECODER.decode(text)
    except _Refused as exc:
        raise error(f"{what}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise error(f"{what} is not JSON") from exc
    finally:
        if collecting:
            gc.enable()
    if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(text):
        raise error(f"{what}: nested deeper than {MAX_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(text) and _holds_lone_surrogate(value):
        raise error(f"{what}: a string holds a lone surrogate")
    return value


def _too_deep(text: str) -> bool:
    """Whether valid JSON ``text`` nests deeper than :data:`MAX_DEPTH`, at C speed: without
    its strings, only brackets kept (``{`` as ``[``), each pass of ``replace("[]", "")``
    removes one level."""
    brackets = _STRING.sub("", text) if '"' in text else text
    brackets = brackets.translate(_BRACKETS_ONLY)
    for _ in range(MAX_DEPTH):
        brackets = brackets.replace("[]", "")
        if not brackets:
            return False
    return True


def _holds_lone_surrogate(value: object) -> bool:
    """Whether a parsed value holds a lone surrogate (escapes such as ``"\\udfff"``)."""
    try:
        json.dumps(value, ensure_ascii=False, check_circular=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
