"""Benchmark of the AI backends (bot/work). Prints figures; checks only that answers came back.

- Embedded model: time to first token and tokens generated per second through
  ``LocalBackend`` (few-shot prompt, streamed, queued), against a baseline measured in the same
  run: the same model driven directly (one non-streamed llama.cpp completion, its own timing).
- OpenAI-compatible client against the test server on 127.0.0.1: requests per second through
  ``OpenAIBackend.answer`` and, as the baseline, through a bare ``httpx`` POST + ``json.loads``
  of the same request on the same connection pool; the difference per request is the client's
  overhead in microseconds.

Run from the repository root: ``.venv/bin/python -m bench.work`` (about 20 s on 2 cores).
Last line: ``local_tokens_per_s=N client_overhead_us=M``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LOCAL_QUESTIONS = [
    "Describe the water cycle in detail.",
    "What are the main causes of the seasons on Earth?",
    "Explain how a bicycle stays upright when moving.",
    "What is photosynthesis and why does it matter?",
    "Why do we have leap years?",
    "How does a refrigerator keep food cold?",
]
CLIENT_REQUESTS = 300


async def bench_local() -> float:
    import xllamacpp  # noqa: F401  (the extra must be installed)

    from bot.work.config import LocalModelConfig
    from bot.work.local import LocalBackend
    from bot.work.result import Answer, WorkRequest

    backend = LocalBackend(LocalModelConfig(max_tokens=64))
    started = time.monotonic()
    model = await backend.start()
    print(f"local: model ready in {time.monotonic() - started:.2f} s (shared, loaded once)")
    await backend.answer(WorkRequest("What is 1+1?", 4, 60.0))  # warm-up

    # baseline: the model driven directly (no prompt framing, no stop, no streaming), run
    # interleaved with the backend's answers so both see the same machine load
    body = {"prompt": "The history of the printing press", "max_tokens": 48, "temperature": 0.2}
    raw_rates: list[float] = []
    raw_prompt_s: list[float] = []
    ttfts: list[float] = []
    tokens = 0
    gen_seconds = 0.0
    for i, question in enumerate(LOCAL_QUESTIONS):
        if i % 2 == 0:
            raw: dict[str, Any] = await asyncio.to_thread(
                model._server.handle_completions,  # direct access: this is the baseline
                body,
            )
            raw_rates.append(float(raw["timings"]["predicted_per_second"]))
            raw_prompt_s.append(float(raw["timings"]["prompt_ms"]) / 1000)
        result = await backend.answer(WorkRequest(question, 64, 60.0))
        if not isinstance(result, Answer) or result.timings.first_token_s is None:
            print(f"local: {question!r} -> {result}")
            continue
        ttfts.append(result.timings.first_token_s)
        if result.completion_tokens > 1:
            tokens += result.completion_tokens - 1
            gen_seconds += result.timings.total_s - result.timings.first_token_s
    raw_rate = statistics.median(raw_rates)
    raw_ttft = statistics.median(raw_prompt_s)
    await backend.aclose()
    rate = tokens / gen_seconds if gen_seconds > 0 else 0.0
    print(
        f"local: baseline (direct llama.cpp, 48 tokens, median of 3): {raw_rate:.1f} tokens/s, "
        f"prompt {raw_ttft * 1000:.0f} ms"
    )
    print(
        f"local: LocalBackend over {len(ttfts)} answers: {rate:.1f} tokens/s generated "
        f"({tokens} tokens), time to first token median {statistics.median(ttfts) * 1000:.0f} ms "
        f"(few-shot prompt of ~130 tokens)"
    )
    print(f"local: ratio to baseline {rate / raw_rate:.2f}")
    return rate


async def bench_client() -> float:
    import httpx

    from bot.work.openai_compat import OpenAIBackend
    from bot.work.result import Answer, WorkRequest
    from tests.fixtures.ai_server import AiTestServer
    from tests.work.helpers import config_for

    server = AiTestServer()
    server.start()
    try:
        scenario = server.scenario()
        request = WorkRequest("Why is the sky blue?", 16, 10.0)
        async with httpx.AsyncClient() as client:
            url = server.url + "/chat/completions"
            payload = {
                "model": "test-model",
                "messages": [{"role": "user", "content": request.question}],
                "max_tokens": 16,
                "stream": False,
            }

            async def raw_once() -> None:
                response = await client.post(url, json=payload, headers=scenario.headers)
                decoded = json.loads(response.content)
                assert decoded["choices"][0]["message"]["content"]

            results: dict[str, float] = {}
            for stream in (False, True):
                backend = OpenAIBackend(config_for(scenario, stream=stream, tokenize=False), client)

                async def ours_once(b: OpenAIBackend = backend) -> None:
                    result = await b.answer(request)
                    assert isinstance(result, Answer), result

                for _ in range(20):  # warm-up: connection, code paths
                    await raw_once()
                    await ours_once()
                for label, once in (("raw", raw_once), (f"backend_stream={stream}", ours_once)):
                    if label == "raw" and stream:
                        continue
                    best = float("inf")
                    for _round in range(3):
                        t0 = time.perf_counter()
                        for _ in range(CLIENT_REQUESTS):
                            await once()
                        best = min(best, time.perf_counter() - t0)
                    results[label] = best / CLIENT_REQUESTS
        raw = results["raw"]
        for label, per_request in results.items():
            print(
                f"client: {label:22s} {1 / per_request:8.0f} requests/s "
                f"({per_request * 1e6:.0f} us/request)"
            )
        overhead = (results["backend_stream=False"] - raw) * 1e6
        stream_overhead = (results["backend_stream=True"] - raw) * 1e6
        print(
            f"client: overhead per request over bare httpx: {overhead:.0f} us (JSON), "
            f"{stream_overhead:.0f} us (streamed SSE, includes the server's chunking)"
        )
        return overhead
    finally:
        server.stop()


async def main() -> None:
    rate = await bench_local()
    overhead = await bench_client()
    print(f"local_tokens_per_s={rate:.1f} client_overhead_us={overhead:.0f}")


if __name__ == "__main__":
    asyncio.run(main())
