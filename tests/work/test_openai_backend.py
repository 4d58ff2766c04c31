"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 that misbehaves on
request. Every case gives its typed result, and no retry ever produces a second generation."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.work.estimate import charge_for, estimate
from bot.work.http1 import lean_client
from bot.work.openai_compat import TOOL_CALLS, OpenAIBackend
from bot.work.pricing import Estimate, Pricing
from bot.work.result import Answer, FailureKind, Turn, WorkFailure
from tests.fixtures.ai_server import AiTestServer, Behaviour, prompt_tokens
from tests.work.helpers import ask, config_for


@pytest.fixture(params=["httpx", "lean"])
async def http(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """Every case over httpx's own transport and over the lean one the agent uses."""
    client = httpx.AsyncClient() if request.param == "httpx" else lean_client()
    async with client:
        yield client


def _answer(result: object) -> Answer:
    assert isinstance(result, Answer), result
    return result


def _failure(result: object, kind: FailureKind, code: str) -> WorkFailure:
    assert isinstance(result, WorkFailure), result
    assert (result.kind, result.code) == (kind, code), result
    return result


@pytest.mark.parametrize("stream", [True, False])
async def test_answer_with_reported_usage(
    ai_server: AiTestServer, http: httpx.AsyncClient, stream: bool
) -> None:
    sc = ai_server.scenario()
    backend = OpenAIBackend(config_for(sc, stream=stream), http)
    request = ask(system="Be brief.", history=(Turn("user", "hi"), Turn("assistant", "hello")))
    answer = _answer(await backend.answer(request))
    assert answer.text.startswith("the answer is")
    assert answer.usage_source == "reported"
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "Why is the sky blue?"},
    ]
    assert answer.prompt_tokens == prompt_tokens(messages)
    assert answer.completion_tokens == 12
    assert answer.model == "test-model"
    assert answer.attempts == 1 and not answer.truncated
    assert (answer.timings.first_token_s is not None) == stream
    assert answer.timings.total_s >= answer.timings.queued_s >= 0
    [seen] = sc.chat_requests()
    assert seen.body["max_tokens"] == 32
    assert seen.body["messages"] == messages
    assert seen.body["stream"] is stream
    assert ("stream_options" in seen.body) == stream
    assert seen.headers["x-scenario"] == sc.name


async def test_usage_in_the_finish_chunk_llamacpp_style(
    ai_server: AiTestServer, http: httpx.AsyncClient
) -> None:
    sc = ai_server.scenario().script(Behaviour(usage="finish_chunk"))
    answer = _answer(await OpenAIBackend(config_for(sc), http).answer(ask()))
    assert answer.usage_source == "reported" and answer.completion_tokens == 12


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("tokenizer", [True, False])
async def test_missing_usage_is_counted_never_above_the_cap(
    ai_server: AiTestServer, http: httpx.AsyncClient, stream: bool, tokenizer: bool
) -> None:
    sc = ai_server.scenario(tokenizer=tokenizer).script(Behaviour(usage="none", answer_tokens=40))
    backend = OpenAIBackend(config_for(sc, stream=stream), http)
    request = ask(max_tokens=20)
    answer = _answer(await backend.answer(request))
    assert answer.usage_source == "counted"
    assert answer.truncated
    assert answer.completion_tokens <= 20
    real_prompt = prompt_tokens([{"role": "user", "content": request.question}])
    if tokenizer:
        assert answer.prompt_tokens == real_prompt
        assert answer.completion_tokens == 20
    else:
        assert answer.prompt_tokens >= real_prompt


async def test_truncated_at_max_tokens(ai_server: AiTestServer, http: httpx.AsyncClient) -> None:
    sc = ai_server.scenario().script(Behaviour(answer_tokens=100))
    answer = _answer(await OpenAIBackend(config_for(sc), http).answer(ask(max_tokens=7)))
    assert answer.truncated and answer.completion_tokens == 7


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
async def test_known_failures_are_retried_once_answered(
    ai_server: AiTestServer, http: httpx.AsyncClient, status: int
) -> None:
    sc = ai_server.scenario().script(Behaviour("status", status=status))
    answer = _answer(await OpenAIBackend(config_for(sc), http).answer(ask()))
    assert answer.attempts == 2
    assert len(sc.chat_requests()) == 2
    assert sc.generations() == 1


async def test_retries_are_bounded(ai_server: AiTestServer, http: httpx.AsyncClient) -> None:
    sc = ai_server.scenario().script(*[Behaviour("status", status=503)] * 5)
    result = await OpenAIBackend(config_for(sc, max_attempts=3), http).answer(ask())
    failure = _failure(result, FailureKind.UNREACHABLE, "http_503")
    assert failure.attempts == 3 and failure.retryable
    assert len(sc.chat_requests()) == 3
    assert sc.generations() == 0


async def test_retry_after_beyond_the_deadline_gives_up(
    ai_server: AiTestServer, http: httpx.AsyncClient
) -> None:
    sc = ai_server.scenario().script(Behaviour("status", status=429, retry_after="30"))
    result = await OpenAIBackend(config_for(sc), http).answer(ask(timeout_s=2))
    failure = _failure(result, FailureKind.REFUSED, "rate_limited")
    assert failure.attempts == 1
    assert len(sc.chat_requests()) == 1


@pytest.mark.parametrize(
    ("behaviour", "kind", "code"),
    [
        (Behaviour("drop", chunks=3), FailureKind.UNREACHABLE, "interrupted"),
        (Behaviour("close"), FailureKind.UNREACHABLE, "interrupted"),
        (Behaviour("stream_error"), FailureKind.UNREACHABLE, "interrupted"),
        (Behaviour("garbage"), FailureKind.MALFORMED, "stream_garbage"),
        (Behaviour("wrong_shape"), FailureKind.MALFORMED, "shape"),
        (Behaviour("empty"), FailureKind.MALFORMED, "empty"),
        (Behaviour("echo"), FailureKind.MALFORMED, "echo"),
        (Behaviour("content_filter"), FailureKind.REFUSED, "content"),
        (Behaviour("error_200"), FailureKind.UNREACHABLE, "http_502"),
        (Behaviour("status", status=504), FailureKind.TIMED_OUT, "http_504"),
        (Behaviour("status", status=401), FailureKind.REFUSED, "auth"),
        (
            Behaviour("status", status=402, message="Insufficient credits"),
            FailureKind.REFUSED,
            "quota",
        ),
        (
            Behaviour("status", status=400, code="content_policy_violation"),
            FailureKind.REFUSED,
            "content",
        ),
        (
            Behaviour("status", status=400, code="context_length_exceeded"),
            FailureKind.OVER_BUDGET,
            "context_length",
        ),
        (
            Behaviour("status", status=404, message="no such model"),
            FailureKind.REFUSED,
            "not_found",
        ),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
async def test_each_misbehaviour_gives_its_typed_failure_without_retry(
    ai_server: AiTestServer,
    http: httpx.AsyncClient,
    behaviour: Behaviour,
    kind: FailureKind,
    code: str,
    stream: bool,
) -> None:
    if not stream and behaviour.kind in ("stream_error",):
        behaviour = Behaviour("drop")
    if not stream and behaviour.kind == "garbage":
        code = "not_json"
    sc = ai_server.scenario().script(behaviour)
    result = await OpenAIBackend(config_for(sc, stream=stream), http).answer(ask())
    failure = _failure(result, kind, code)
    assert not failure.retryable and failure.attempts == 1
    assert len(sc.chat_requests()) == 1  # never retried
    assert sc.generations() <= 1


@pytest.mark.parametrize("stall", ["stall", "stall_mid_stream"])
async def test_a_stalled_server_times_out_at_the_deadline(
    ai_server: AiTestServer, http: httpx.AsyncClient, stall: str
) -> None:
    sc = ai_server.scenario().script(Behaviour(stall))  # type: ignore[arg-type]
    backend = OpenAIBackend(config_for(sc, read_timeout_s=30), http)
    result = await backend.answer(ask(timeout_s=0.5))
    failure = _failure(result, FailureKind.TIMED_OUT, "deadline")
    assert not failure.retryable
    assert len(sc.chat_requests()) == 1


async def test_a_stall_shorter_than_the_deadline_hits_the_read_timeout(
    ai_server: AiTestServer, http: httpx.AsyncClient
) -> None:
    sc = ai_server.scenario().script(Behaviour("stall_mid_stream"))
    backend = OpenAIBackend(config_for(sc, read_timeout_s=0.3), http)
    failure = _failure(await backend.answer(ask(timeout_s=10)), FailureKind.TIMED_OUT, "stalled")
    assert failure.attempts == 1 and len(sc.chat_requests()) == 1


async def test_slow_stream_past_the_deadline_is_not_a_partial_answer(
    ai_server: AiTestServer, http: httpx.AsyncClient
) -> None:
    sc = ai_server.scenario().script(Behaviour(delay_s=0.1, answer_tokens=30))
    result = await OpenAIBackend(config_for(sc), http).answer(ask(timeout_s=0.5))
    _failure(result, FailureKind.TIMED_OUT, "deadline")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_server_is_retried_then_reported(http: httpx.AsyncClient) -> None:
    from bot.work.config import OpenAIConfig

    config = OpenAIConfig(
        f"http://127.0.0.1:{_closed_port()}/v1", "m", backoff_s=0.01, max_attempts=3
    )
    failure = _failure(
        await OpenAIBackend(config, http).answer(ask()), FailureKind.UNREACHABLE, "connect"
    )
    assert failure.retryable and failure.attempts == 3


async def test_switches_to_max_completion_tokens_when_asked(
    ai_server: AiTestServer, http: httpx.AsyncClient
) -> None:
    sc = ai_server.scenario(require_max_completion_tokens=True)
    backend = OpenAIBackend(config_for(sc), http)
    answer = _answer(await backend.answer(ask(max_tokens=9)))
    assert answer.attempts == 1
    first, second = sc.chat_requests()
    assert first.body["max_tokens"] == 9 and not first.generated
    assert second.body["max_completion_tokens"] == 9 and "max_tokens" not in second.body
    _answer(await backend.answer(ask()))
    assert len(sc.chat_requests()) == 3  # remembered
    configured = OpenAIBackend(config_for(sc, max_tokens_field="max_completion_tokens"), http)
    _answer(await configured.answer(ask()))
    assert len(sc.chat_requests()) == 4


async def test_api_key_is_sent_and_never_in_a_failure(
    ai_server: AiTestServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    key = "sk-live-SUPERSECRET-0123456789abcdef"
    key_file = tmp_path / "key"
    key_file.write_text(key)
    key_file.chmod(0o600)
    sc = ai_server.scenario().script(Behaviour(), Behaviour("echo_auth"))
    backend = OpenAIBackend(
        config_for(sc, api_key_file=key_file, headers=sc.headers | {"X-Title": "Timmy"}), http
    )
    _answer(await backend.answer(ask()))
    first = sc.chat_requests()[0]
    assert first.headers["authorization"] == f"Bearer {key}"
    assert first.headers["x-title"] == "Timmy"
    failure = _failure(await backend.answer(ask()), FailureKind.REFUSED, "auth")
    assert key not in failure.message and "SUPERSECRET" not in failure.message
    assert key not in repr(backend.__dict__)


async def test_prompt_over_the_limit_is_over_budget_before_sending(
    ai_server: AiTestServer, http: httpx.AsyncClient
) -> None:
    sc = ai_server.scenario()
    backend = OpenAIBackend(config_for(sc, max_prompt_tokens=50), http)
    result = await backend.answer(ask(question="word " * 200))
    failure = _failure(result, FailureKind.OVER_BUDGET, "prompt_too_long")
    assert failure.attempts == 0
    assert sc.chat_requests() == []
    quote = await estimate(backend, ask(question="word " * 200), Pricing.per_token(1, 1))
    assert isinstance(quote, WorkFailure) and quote.kind is FailureKind.OVER_BUDGET


@pytest.mark.parametrize("stream", [True, False])
async def test_connections_are_reused(ai_server: AiTestServer, stream: bool) -> None:
    """A streamed answer is read to the end of its body (past ``[DONE]``): its connection goes
    back to the pool instead of being closed, and the next request needs no new one."""
    sc = ai_server.scenario()
    async with httpx.AsyncClient() as client:
        backend = OpenAIBackend(config_for(sc, stream=stream, tokenize=False), client)
        for _ in range(5):
            _answer(await backend.answer(ask()))
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == 1
    assert len(sc.chat_requests()) == 5


async def test_tokenizer_calls_share_few_connections(ai_server: AiTestServer) -> None:
    """Many quotes at once: the tokenizer calls queue for ``TOOL_CALLS`` connections instead of
    opening one each."""
    sc = ai_server.scenario()
    async with httpx.AsyncClient() as client:
        backend = OpenAIBackend(config_for(sc), client)
        counts = await asyncio.gather(*(backend.count_prompt_tokens(ask(question=f"q {i}"))
                                        for i in range(3 * TOOL_CALLS)))
        assert all(c.exact for c in counts)
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) <= TOOL_CALLS


async def test_a_server_stalling_after_done_still_answers(
    ai_server: AiTestServer, http: httpx.AsyncClient
) -> None:
    """The end of the body after ``[DONE]`` is awaited briefly: a server that never sends it
    costs its connection, not the answer."""
    sc = ai_server.scenario()
    sc.script(Behaviour(kind="stall_after_done"))
    backend = OpenAIBackend(config_for(sc, stream=True, tokenize=False), http)
    answer = _answer(await backend.answer(ask(timeout_s=30.0)))
    assert answer.text and answer.completion_tokens > 0
    _answer(await backend.answer(ask()))
    assert len(sc.chat_requests()) == 2


async def test_an_owned_client_is_closed(ai_server: AiTestServer) -> None:
    backend = OpenAIBackend(config_for(ai_server.scenario()))
    _answer(await backend.answer(ask()))
    await backend.aclose()
    assert backend._client.is_closed


async def test_concurrent_requests_each_charged_once(
    ai_server: AiTestServer, http: httpx.AsyncClient
) -> None:
    sc = ai_server.scenario().script(Behaviour("status", status=503), Behaviour("drop"))
    backend = OpenAIBackend(config_for(sc), http)
    results = await asyncio.gather(*(backend.answer(ask(question=f"q{i}?")) for i in range(8)))
    answers = [r for r in results if isinstance(r, Answer)]
    failures = [r for r in results if isinstance(r, WorkFailure)]
    assert len(failures) == 1 and failures[0].code == "interrupted"
    assert len(answers) == 7
    # one generation per answer, plus the one that was dropped mid-answer
    assert sc.generations() == 8


QUESTIONS = [
    "Why is the sky blue?",
    "x",
    "Explain, in detail, the causes of the First World War; be thorough!!!",
    "¿Dónde está la biblioteca? — ñandú, crème brûlée, naïve café",
    "日本の首都はどこですか？東京ですか、それとも大阪ですか。",
    "🙂🙃🚀 emoji only 👍🏽👨‍👩‍👧",
    "code: def f(x):\n    return {'a': [1, 2, 3]}  # comment\n\tTabbed",
    "<|start|>system\nInjected marker<|end|> and <b>html</b> &amp; entities",
    "a" * 3000,
    " ".join(f"w{i}" for i in range(400)),
    "Numbers 3.14159 2.71828 1e-10 0xFF 1,000,000",
    "Ελληνικά και русский текст вместе",
]


@pytest.mark.parametrize("tokenizer", [True, False])
@pytest.mark.parametrize("usage", ["openai", "none"])
async def test_actual_cost_never_exceeds_the_estimate(
    ai_server: AiTestServer, http: httpx.AsyncClient, tokenizer: bool, usage: str
) -> None:
    sc = ai_server.scenario(tokenizer=tokenizer)
    backend = OpenAIBackend(config_for(sc), http)
    pricing = Pricing(input_msat=1500, output_msat=6000, fixed_fee_msat=100)
    history = (Turn("user", "earlier question"), Turn("assistant", "earlier answer"))
    for i, question in enumerate(QUESTIONS):
        for max_tokens in (1, 5, 64):
            sc.script(Behaviour(usage=usage, answer_tokens=3 + i * 7))  # type: ignore[arg-type]
            request = ask(question, max_tokens=max_tokens, history=history[: i % 3])
            quote = await estimate(backend, request, pricing)
            assert isinstance(quote, Estimate)
            assert quote.prompt_exact == tokenizer
            answer = _answer(await backend.answer(request))
            actual = pricing.price_msat(answer.prompt_tokens, answer.completion_tokens)
            assert actual <= quote.amount_msat, (question, max_tokens)
            charge = charge_for(pricing, quote, answer)
            assert not charge.capped and charge.amount_msat == actual


async def test_a_server_ignoring_max_tokens_is_charged_the_quote_only(
    ai_server: AiTestServer, http: httpx.AsyncClient
) -> None:
    sc = ai_server.scenario().script(Behaviour("over_cap"))
    backend = OpenAIBackend(config_for(sc), http)
    pricing = Pricing.per_token(1, 10)
    request = ask(max_tokens=10)
    quote = await estimate(backend, request, pricing)
    assert isinstance(quote, Estimate)
    answer = _answer(await backend.answer(request))
    assert answer.completion_tokens == 60
    charge = charge_for(pricing, quote, answer)
    assert charge.capped and charge.amount_msat == quote.amount_msat


async def test_a_request_picks_an_offered_model_and_its_temperature(
    ai_server: AiTestServer, http: httpx.AsyncClient
) -> None:
    sc = ai_server.scenario()
    backend = OpenAIBackend(config_for(sc, models=("other-model",), temperature=0.2), http)
    assert backend.models == ("test-model", "other-model")
    _answer(await backend.answer(ask(model="other-model", temperature=1.5)))
    _answer(await backend.answer(ask()))
    first, second = sc.chat_requests()
    assert (first.body["model"], first.body["temperature"]) == ("other-model", 1.5)
    assert (second.body["model"], second.body["temperature"]) == ("test-model", 0.2)


async def test_a_model_not_offered_is_refused_before_anything_is_sent(
    ai_server: AiTestServer, http: httpx.AsyncClient
) -> None:
    sc = ai_server.scenario()
    backend = OpenAIBackend(config_for(sc), http)
    request = ask(model="gpt-9")
    _failure(await backend.answer(request), FailureKind.REFUSED, "model_not_offered")
    quote = await estimate(backend, request, Pricing(input_msat=1, output_msat=1))
    _failure(quote, FailureKind.REFUSED, "model_not_offered")
    assert sc.chat_requests() == []
