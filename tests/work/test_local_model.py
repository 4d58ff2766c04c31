"""The embedded model, for real: llama.cpp in-process on the CPU with the packaged gemma-3-270m.

Slow (a model runs), but run in CI; answers are kept short (small max_tokens). The model is
loaded once for the whole process and shared, as in production.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.work.config import LocalModelConfig, OpenAIConfig
from bot.work.errors import LocalModelUnavailable
from bot.work.estimate import charge_for, estimate
from bot.work.local import LocalBackend, LocalModel, packaged_model_path
from bot.work.openai_compat import OpenAIBackend
from bot.work.pricing import Estimate, Pricing
from bot.work.prompt import check_answer_text
from bot.work.result import Answer, FailureKind, Turn, WorkFailure, WorkRequest
from bot.work.tokens import messages_token_bound, text_token_bound
from tests.work.test_openai_backend import QUESTIONS

pytestmark = pytest.mark.slow

CONFIG = LocalModelConfig(max_tokens=24)


@pytest.fixture
async def local() -> AsyncIterator[LocalBackend]:
    backend = LocalBackend(CONFIG)
    await backend.start()
    yield backend
    await backend.aclose()


def _ask(question: str, max_tokens: int = 24, timeout_s: float = 60.0, **kw: object) -> WorkRequest:
    return WorkRequest(question, max_tokens, timeout_s, **kw)  # type: ignore[arg-type]


async def test_answers_three_questions_with_usage(local: LocalBackend) -> None:
    questions = [
        "What is the capital of France?",
        "How many days are in a week?",
        "What color is the sky on a clear day?",
    ]
    texts = []
    for question in questions:
        request = _ask(question)
        counted = await local.count_prompt_tokens(request)
        answer = await local.answer(request)
        assert isinstance(answer, Answer), answer
        assert answer.text.strip() and answer.text == answer.text.strip()
        assert check_answer_text(answer.text, question) == (answer.text, None)
        assert question.lower() not in answer.text.lower()
        assert answer.usage_source == "reported"
        assert counted.exact and answer.prompt_tokens == counted.tokens
        assert 1 <= answer.completion_tokens <= 24
        assert answer.model == "gemma-3-270m-q4_k_m"
        assert answer.timings.first_token_s is not None
        assert answer.timings.total_s >= answer.timings.first_token_s
        texts.append(answer.text)
    assert len(set(texts)) == 3


async def test_the_model_is_loaded_once_and_shared(local: LocalBackend) -> None:
    other = LocalBackend(LocalModelConfig(max_tokens=8))
    assert await other.start() is await local.start()
    path = packaged_model_path()
    assert path.is_file() and path.stat().st_size > 200_000_000
    assert "/work/main" not in str(path.resolve())


async def test_requests_are_served_one_at_a_time(local: LocalBackend) -> None:
    async def timed(question: str) -> tuple[float, Answer]:
        started = time.monotonic()
        result = await local.answer(_ask(question, max_tokens=16))
        assert isinstance(result, Answer), result
        return started, result

    runs = await asyncio.gather(
        timed("What is the largest ocean?"), timed("Who painted the Mona Lisa?")
    )
    windows = sorted(
        (started + a.timings.queued_s, started + a.timings.total_s) for started, a in runs
    )
    # the second generation began after the first ended (windows are reconstructed from
    # per-request offsets, good to a few microseconds; overlapping runs would overlap by the
    # length of a whole generation)
    assert windows[0][1] <= windows[1][0] + 0.002


async def test_deadline_stops_generation_and_the_model_stays_usable(local: LocalBackend) -> None:
    result = await local.answer(_ask("Tell me about the history of Rome.", 24, timeout_s=0.05))
    assert isinstance(result, WorkFailure)
    assert result.kind is FailureKind.TIMED_OUT
    after = await local.answer(_ask("What is the capital of Italy?"))
    assert isinstance(after, Answer), after


async def test_prompt_too_long_for_the_context_is_over_budget() -> None:
    backend = LocalBackend(LocalModelConfig(n_ctx=2048, max_tokens=24))
    request = _ask("word " * 2100)
    result = await backend.answer(request)
    assert isinstance(result, WorkFailure) and result.kind is FailureKind.OVER_BUDGET
    quote = await estimate(backend, request, Pricing())
    assert isinstance(quote, WorkFailure) and quote.kind is FailureKind.OVER_BUDGET
    await backend.aclose()


async def test_cost_never_exceeds_the_estimate_with_the_real_tokenizer(local: LocalBackend) -> None:
    pricing = Pricing(input_msat=100, output_msat=400, fixed_fee_msat=10)
    answered = 0
    history = (Turn("user", "What is 2+2?"), Turn("assistant", "4."))
    for i, question in enumerate(QUESTIONS):
        request = _ask(question[:600], max_tokens=4 + i % 3, history=history[: 2 * (i % 2)])
        quote = await estimate(local, request, pricing)
        assert isinstance(quote, Estimate) and quote.prompt_exact
        result = await local.answer(request)
        if isinstance(result, WorkFailure):
            assert result.kind is FailureKind.MALFORMED  # a base model may echo or say nothing
            continue
        answered += 1
        assert result.prompt_tokens <= quote.prompt_tokens
        assert result.completion_tokens <= request.max_tokens
        charge = charge_for(pricing, quote, result)
        assert not charge.capped and charge.amount_msat <= quote.amount_msat
    assert answered >= len(QUESTIONS) // 2


async def test_the_conservative_bound_holds_for_a_real_tokenizer(local: LocalBackend) -> None:
    model = await local.start()
    async with httpx.AsyncClient() as client:
        for text in [*QUESTIONS, "", " ", "\n\n\n", "ÆØÅ" * 50, "\U0001f9d1\u200d\U0001f680" * 20]:
            response = await client.post(
                model.address + "/tokenize", json={"content": text, "add_special": True}
            )
            tokens = len(response.json()["tokens"])
            assert tokens <= text_token_bound(text) + 1  # + BOS
            assert tokens <= messages_token_bound([text])


async def test_works_as_a_llamacpp_server_for_the_http_backend(local: LocalBackend) -> None:
    """llama.cpp's own HTTP server (the embedded model's) as an OpenAI-compatible endpoint:
    the exact prompt count from /apply-template + /tokenize equals the usage it reports."""
    model: LocalModel = await local.start()
    async with httpx.AsyncClient() as client:
        for stream in (False, True):
            config = OpenAIConfig(model.address + "/v1", "gemma", stream=stream, max_tokens=6)
            backend = OpenAIBackend(config, client)
            request = WorkRequest("Name a fruit.", 6, 60.0, system="Answer briefly.")
            counted = await backend.count_prompt_tokens(request)
            result = await backend.answer(request)
            if isinstance(result, WorkFailure):  # a base model in chat mode may echo
                assert result.kind is FailureKind.MALFORMED, result
                continue
            assert counted.exact and result.prompt_tokens == counted.tokens
            assert result.usage_source == "reported" and result.completion_tokens <= 6


async def test_a_missing_or_broken_model_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = LocalBackend(LocalModelConfig(model_path=tmp_path / "absent.gguf"))
    result = await missing.answer(_ask("hi?"))
    assert isinstance(result, WorkFailure)
    assert (result.kind, result.code) == (FailureKind.UNREACHABLE, "model_unavailable")
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + bytes(range(256)) * 100)
    with pytest.raises(LocalModelUnavailable):
        await LocalBackend(LocalModelConfig(model_path=bogus)).start()


def test_packaged_model_is_assembled_once_into_the_cache(tmp_path: Path) -> None:
    first = packaged_model_path(tmp_path)
    stamp = tmp_path / (first.name + ".verified")
    assert stamp.is_file()
    mtime = first.stat().st_mtime_ns
    assert packaged_model_path(tmp_path) == first
    assert first.stat().st_mtime_ns == mtime  # reused, not rewritten
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    stamp.write_text("stale")
    assert packaged_model_path(tmp_path) == first  # re-verified and re-stamped
    assert stamp.read_text() != "stale"
    first.unlink()  # 253 MB: do not leave it in pytest's kept temporary directories


SIGNAL_CHECK = """
import asyncio, os, signal, sys
from bot.work.config import LocalModelConfig
from bot.work.local import LocalBackend

signal.signal(signal.SIGINT, signal.default_int_handler)  # not what the test runner inherited

async def main() -> None:
    await LocalBackend(LocalModelConfig(max_tokens=4)).start()
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.sleep(2)

try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(0)
print("llama.cpp swallowed SIGINT")
sys.exit(1)
"""


def test_ctrl_c_still_interrupts_after_loading() -> None:
    """llama.cpp installs its own SIGINT handler when the model loads; ours is put back."""
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_CHECK], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "interrupted" in done.stdout
