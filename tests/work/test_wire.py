"""The OpenAI wire format, sans I/O: each server dialect parses; bad input gives a problem."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.work.result import FailureKind
from bot.work.wire import (
    Completion,
    ParseProblem,
    StreamState,
    Usage,
    classify_error,
    names_max_completion_tokens,
    parse_completion,
    parse_json_bytes,
    parse_retry_after,
    scrub,
)


def _body(content: Any = "Paris.", finish: Any = "stop", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "m",
        "choices": [
            {"message": {"role": "assistant", "content": content}, "finish_reason": finish}
        ],
    }
    body.update(extra)
    return body


def test_completion_with_usage() -> None:
    parsed = parse_completion(_body(usage={"prompt_tokens": 5, "completion_tokens": 2}))
    assert parsed == Completion("Paris.", "stop", Usage(5, 2), "m")


@pytest.mark.parametrize(
    "usage",
    [
        None,
        {},
        {"prompt_tokens": 5},
        {"prompt_tokens": -1, "completion_tokens": 2},
        {"prompt_tokens": "5", "completion_tokens": 2},
        {"prompt_tokens": True, "completion_tokens": 1},
    ],
)
def test_completion_missing_or_bad_usage_is_none(usage: Any) -> None:
    parsed = parse_completion(_body(usage=usage))
    assert isinstance(parsed, Completion) and parsed.usage is None


@pytest.mark.parametrize(
    ("payload", "kind", "code"),
    [
        ([], FailureKind.MALFORMED, "shape"),
        ({"choices": []}, FailureKind.MALFORMED, "shape"),
        ({"choices": [{"finish_reason": "stop"}]}, FailureKind.MALFORMED, "shape"),
        (_body(content=5), FailureKind.MALFORMED, "shape"),
        (_body(finish=None), FailureKind.MALFORMED, "no_finish"),
        (_body(finish="content_filter"), FailureKind.REFUSED, "content"),
        (
            {
                "choices": [
                    {"message": {"content": None, "refusal": "I can't."}, "finish_reason": "stop"}
                ]
            },
            FailureKind.REFUSED,
            "content",
        ),
        (
            {"error": {"message": "Provider returned error", "code": 502}},
            FailureKind.UNREACHABLE,
            "http_502",
        ),
    ],
)
def test_completion_problems(payload: Any, kind: FailureKind, code: str) -> None:
    parsed = parse_completion(payload)
    assert isinstance(parsed, ParseProblem)
    assert (parsed.kind, parsed.code, parsed.retryable) == (kind, code, False)


def _sse(chunk: dict[str, Any]) -> str:
    return "data: " + json.dumps(chunk)


def _delta(text: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if text is None else {"content": text}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _feed(lines: list[str]) -> Completion | ParseProblem:
    state = StreamState()
    for line in lines:
        problem = state.feed(line)
        if problem is not None:
            return problem
    return state.result()


def test_stream_openai_usage_in_last_chunk() -> None:
    lines = [
        ": OPENROUTER PROCESSING",
        "",
        "event: message",
        _sse(_delta("Hel")),
        _sse(_delta("lo")),
        _sse(_delta(None, "stop")),
        _sse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
        "data: [DONE]",
    ]
    assert _feed(lines) == Completion("Hello", "stop", Usage(3, 2), None)


def test_stream_llamacpp_usage_in_finish_chunk_without_done() -> None:
    finish = _delta(None, "length") | {"usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    assert _feed([_sse(_delta("Hi")), _sse(finish)]) == Completion(
        "Hi", "length", Usage(3, 1), None
    )


def test_stream_without_usage() -> None:
    result = _feed([_sse(_delta("Hi")), _sse(_delta(None, "stop")), "data: [DONE]"])
    assert isinstance(result, Completion) and result.usage is None


def test_stream_cut_before_finish_is_interrupted_not_partial() -> None:
    result = _feed([_sse(_delta("Half an ans"))])
    assert isinstance(result, ParseProblem)
    assert (result.kind, result.code) == (FailureKind.UNREACHABLE, "interrupted")
    assert not result.retryable


def test_bodies_json_cannot_hold_are_malformed() -> None:
    # found by the fuzz suite on the code before issue 12: RecursionError escaped the parser
    for body in (b"[" * 2000 + b"]" * 2000, b'{"usage":' + b"9" * 5000 + b"}", b"[NaN]"):
        result = parse_json_bytes(body)
        assert isinstance(result, ParseProblem) and result.code == "not_json"


@pytest.mark.parametrize(
    ("line", "kind", "code"),
    [
        ("data: {not json", FailureKind.MALFORMED, "stream_garbage"),
        ("<html>", FailureKind.MALFORMED, "stream_garbage"),
        ("data: [1, 2]", FailureKind.MALFORMED, "shape"),
        ('data: {"choices": [{"delta": {"content": 7}}]}', FailureKind.MALFORMED, "shape"),
        ('data: {"choices": [{"delta": "x"}]}', FailureKind.MALFORMED, "shape"),
        (
            'data: {"choices": [{"delta": {}, "finish_reason": "content_filter"}]}',
            FailureKind.REFUSED,
            "content",
        ),
        ('data: {"error": {"message": "boom"}}', FailureKind.UNREACHABLE, "interrupted"),
    ],
)
def test_stream_problems(line: str, kind: FailureKind, code: str) -> None:
    result = _feed([_sse(_delta("a")), line])
    assert isinstance(result, ParseProblem)
    assert (result.kind, result.code) == (kind, code)
    assert not result.retryable


@pytest.mark.parametrize(
    ("status", "error", "kind", "code", "retryable"),
    [
        (401, {"message": "Incorrect API key"}, FailureKind.REFUSED, "auth", False),
        (403, None, FailureKind.REFUSED, "auth", False),
        (402, {"message": "Insufficient credits"}, FailureKind.REFUSED, "quota", False),
        (429, {"code": "insufficient_quota"}, FailureKind.REFUSED, "quota", False),
        (429, {"message": "Rate limit reached"}, FailureKind.REFUSED, "rate_limited", True),
        (400, {"code": "content_policy_violation"}, FailureKind.REFUSED, "content", False),
        (
            400,
            {"code": "context_length_exceeded"},
            FailureKind.OVER_BUDGET,
            "context_length",
            False,
        ),
        (400, {"message": "bad"}, FailureKind.REFUSED, "bad_request", False),
        (404, {"message": "model not found"}, FailureKind.REFUSED, "not_found", False),
        (408, None, FailureKind.TIMED_OUT, "http_408", True),
        (500, None, FailureKind.UNREACHABLE, "http_500", True),
        (502, None, FailureKind.UNREACHABLE, "http_502", True),
        (503, "overloaded", FailureKind.UNREACHABLE, "http_503", True),
        (504, None, FailureKind.TIMED_OUT, "http_504", False),
        (599, None, FailureKind.UNREACHABLE, "http_599", False),
    ],
)
def test_classify_error(
    status: int, error: Any, kind: FailureKind, code: str, retryable: bool
) -> None:
    problem = classify_error(status, error, None)
    assert (problem.kind, problem.code, problem.retryable) == (kind, code, retryable)


def test_error_detail_is_bounded() -> None:
    assert len(classify_error(400, {"message": "x" * 10_000}, None).message) < 300


def test_max_completion_tokens_hint() -> None:
    err = {"message": "Unsupported parameter: 'max_tokens'. Use 'max_completion_tokens' instead."}
    assert names_max_completion_tokens(400, err)
    assert not names_max_completion_tokens(400, {"message": "max_completion_tokens too large"})
    assert not names_max_completion_tokens(500, err)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2", 2.0),
        (" 0.5 ", 0.5),
        ("-1", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        (None, None),
    ],
)
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_scrub_masks_the_key_and_its_ends() -> None:
    key = "sk-abcdefgh12345678ijklmnop"
    text = f"bad key {key}; also sk-abcde... and ...ijklmnop"
    cleaned = scrub(text, key)
    assert key not in cleaned and "ijklmnop" not in cleaned
    assert scrub("nothing", None) == "nothing"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "choices",
                    "message",
                    "delta",
                    "content",
                    "finish_reason",
                    "usage",
                    "error",
                    "prompt_tokens",
                    "completion_tokens",
                    "code",
                    "refusal",
                    "model",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@given(json_values)
def test_parsers_never_raise_on_any_json(value: Any) -> None:
    assert isinstance(parse_completion(value), Completion | ParseProblem)
    state = StreamState()
    state.feed("data: " + json.dumps(value))
    assert isinstance(state.result(), Completion | ParseProblem)
    for status in (200, 400, 429, 500, 503):
        assert isinstance(classify_error(status, value, None), ParseProblem)
        names_max_completion_tokens(status, value)


@given(st.lists(st.text(max_size=80), max_size=10))
def test_stream_state_never_raises_on_any_lines(lines: list[str]) -> None:
    state = StreamState()
    for line in lines:
        state.feed(line)
    assert isinstance(state.result(), Completion | ParseProblem)
