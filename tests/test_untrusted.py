"""``bot.untrusted.load_json``: the one way in for outside JSON refuses, with the caller's own
error, everything Python's json lets through or turns into an untyped exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.untrusted import MAX_DEPTH, MAX_INT_DIGITS, load_json


class CallerError(ValueError):
    """Stands for the calling layer's typed error."""


def load(raw: str | bytes, max_chars: int = 1 << 20) -> object:
    return load_json(raw, max_chars=max_chars, error=CallerError, what="doc")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"a":' + "1" * 4301 + "}", "integer longer than"),  # Python's own limit: ValueError
        ("[-" + "1" * (MAX_INT_DIGITS + 1) + "]", "integer longer than"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested deeper than"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),  # RecursionError inside the parser
        ('{"k":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1), "nested deeper than"),
        ('["AUTH","\\udfff"]', "surrogate"),
        ('["\\ud800x"]', "surrogate"),
        ('{"\\udc00":1}', "surrogate"),
        ('"\udfff"', "surrogate"),  # a str that already holds one
        (b'["\xed\xa0\x80"]', "not UTF-8"),  # an encoded surrogate (json.loads takes it)
        (b"\xff\xfe[\x00]\x00", "not UTF-8"),  # UTF-16 (json.loads takes it)
        ("[NaN]", "NaN is not JSON"),
        ("[-Infinity]", "-Infinity is not JSON"),
        ("[1,]", "not JSON"),
        ("", "not JSON"),
        ("x" * 11, "larger than 10"),
    ],
)
def test_refusals_are_the_callers_error(raw: str | bytes, reason: str) -> None:
    with pytest.raises(CallerError, match=reason):
        load(raw, max_chars=10 if reason == "larger than 10" else 1 << 20)


def test_what_is_accepted() -> None:
    assert load('["\\ud83d\\ude00", "\\\\udfff"]') == ["😀", "\\udfff"]  # a pair; an escaped \
    assert load("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    assert load("[" + "1" * MAX_INT_DIGITS + ", 1.5e308, -0]") == [int("1" * MAX_INT_DIGITS),
                                                                    1.5e308, 0]
    assert load('"' + "[" * 100 + '"') == "[" * 100  # brackets inside a string are text
    assert load(b'{"a": "\xc3\xa9"}') == {"a": "é"}
    digits = "9" * 60
    assert load('{"note": "' + digits + '"}') == {"note": digits}  # digits in a string: text


def test_not_text_is_refused() -> None:
    with pytest.raises(CallerError):
        load_json(None, max_chars=10, error=CallerError, what="doc")  # type: ignore[arg-type]


def test_depth_counts_objects_and_arrays_alike() -> None:
    alternating = '{"a":[' * 16 + "1" + "]}" * 16  # 32 levels
    assert load(alternating) is not None
    with pytest.raises(CallerError, match="nested deeper"):
        load('{"a":[' * 16 + '{"b":1}' + "]}" * 16)  # 33 levels
    quoted = '["\\"' + "[" * 100 + '\\\\", "{{{", 1]'  # brackets and quotes inside strings
    assert load(quoted) == ['"' + "[" * 100 + "\\", "{{{", 1]


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


nested = st.recursive(
    st.integers() | st.text(st.sampled_from('[]{}"\\ ,:a\udfff😀')),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(st.sampled_from('[]{}"\\a'), max_size=3), inner, max_size=3),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(nested, st.integers(0, 40), st.booleans())
def test_refusal_matches_the_real_depth_and_surrogates(value: object, wrap: int,
                                                       ascii_only: bool) -> None:
    for _ in range(wrap):
        value = [value]
    text = json.dumps(value, ensure_ascii=ascii_only)
    lone = any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(value, ensure_ascii=False))
    try:
        got = load(text)
    except CallerError as exc:
        assert _depth(value) > MAX_DEPTH or lone, exc
        return
    assert _depth(value) <= MAX_DEPTH and not lone and got == value
