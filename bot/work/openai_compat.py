"""Any OpenAI-compatible chat-completions server over httpx (Ollama, llama.cpp server, vLLM,
OpenAI, OpenRouter...).

One request is at most ``config.max_attempts`` HTTP attempts, all inside the request's deadline.
An attempt is retried only when nothing can have been generated: the connection was never
established, or the server answered 408/429/500/502/503 (it says it did not run the request).
A read timeout, a dropped connection, a 504, an error in the middle of a stream are never
retried: the model may have started (and a paid API may be billing), so they become failures
the job flow refunds. ``max_tokens`` (or ``max_completion_tokens``) is always sent.

The API key is sent as ``Authorization: Bearer`` and is masked out of every failure message.
The HTTP client may be injected (connection reuse across backends, tests); one created here
(:func:`bot.work.http1.lean_client`: plain-HTTP model servers through the lean HTTP/1.1
transport) is closed by :meth:`OpenAIBackend.aclose`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, get_args

import httpx

from bot.work.apikey import Secret, load_api_key
from bot.work.config import MaxTokensField, OpenAIConfig
from bot.work.http1 import lean_client
from bot.work.prompt import chat_messages, check_answer_text, unusable_answer
from bot.work.result import (
    Answer,
    FailureKind,
    Timings,
    TokenCount,
    UsageSource,
    WorkFailure,
    WorkRequest,
    WorkResult,
    model_not_offered,
    prompt_too_long,
    timed_out,
)
from bot.work.tokens import messages_token_bound, text_token_bound
from bot.work.wire import (
    MAX_BODY_BYTES,
    Completion,
    ParseProblem,
    StreamState,
    classify_error,
    names_max_completion_tokens,
    parse_completion,
    parse_json_bytes,
    parse_retry_after,
    scrub,
)

log = logging.getLogger(__name__)

MAX_ERROR_BODY_BYTES = 64 * 1024
DRAIN_S = 1.0
TOOL_CALLS = 8
"""Tokenizer calls (``/apply-template``, ``/tokenize``) in flight at once: enough that counting
keeps up with answering (at 2, a burst of 100 jobs answered 8 at a time waited 75 ms at the
median for a count that took 26 ms at 8), few enough that a burst of quotes cannot open a
connection each."""
_SWITCH_FIELD = "use_max_completion_tokens"
ToolPath = Literal["/apply-template", "/tokenize"]
"""llama.cpp's helper endpoints, beside ``/v1``."""


@dataclass(slots=True)
class _Clock:
    """One request's deadline, timestamps and HTTP attempts so far."""

    start: float
    deadline: float
    sent_at: float | None = None
    first_token_at: float | None = None
    attempts: int = 0

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


async def _read_bounded(response: httpx.Response, limit: int) -> bytes | None:
    """The body, or ``None`` when it exceeds ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(lines: AsyncIterator[str], limit: int) -> None:
    """Read what follows ``[DONE]`` (the end of the chunked body), at most ``limit`` characters
    and ``DRAIN_S`` seconds, without parsing it: a response read to its end lets its connection
    go back to the pool, while one left unfinished is closed and the next request pays a new
    TCP connection. A server that goes on (or stalls) after ``[DONE]`` only loses its
    connection: the answer is complete."""
    size = 0
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(DRAIN_S):
            async for line in lines:
                size += len(line)
                if size > limit:
                    return


class OpenAIBackend:
    """An OpenAI-compatible backend. See :class:`bot.work.config.OpenAIConfig`."""

    def __init__(
        self,
        config: OpenAIConfig,
        client: httpx.AsyncClient | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._key: Secret | None = load_api_key(config.api_key_env, config.api_key_file)
        self._owns_client = client is None
        self._client = client if client is not None else lean_client()
        self._max_tokens_field: MaxTokensField = config.max_tokens_field
        self._tokenizer: bool | None = None if config.tokenize else False
        self._rng = rng if rng is not None else random.Random()
        self._tool_calls = asyncio.Semaphore(TOOL_CALLS)
        # parsed once: httpx would parse a string URL again on every request
        self._url = httpx.URL(config.base_url.rstrip("/") + "/chat/completions")
        self._tool_urls: dict[ToolPath, httpx.URL] = {
            path: httpx.URL(config.server_root + path) for path in get_args(ToolPath)}

    # -- Backend interface -------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"openai:{self._config.model}"

    @property
    def default_max_tokens(self) -> int:
        return self._config.max_tokens

    @property
    def models(self) -> tuple[str, ...]:
        return (self._config.model, *self._config.models)

    def max_prompt_tokens(self, max_tokens: int) -> int:
        return self._config.max_prompt_tokens

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def count_prompt_tokens(self, request: WorkRequest) -> TokenCount:
        messages = chat_messages(request)
        if self._tokenizer is not False:
            counted = await self._tokenize_chat(messages)
            if counted is not None:
                return TokenCount(counted, exact=True)
        return TokenCount(self._prompt_bound(messages), exact=False)

    async def answer(self, request: WorkRequest) -> WorkResult:
        start = time.monotonic()
        clock = _Clock(start, start + request.timeout_s)
        try:
            async with asyncio.timeout(request.timeout_s):
                return await self._answer(request, clock)
        except TimeoutError:
            return timed_out(request.timeout_s, attempts=max(1, clock.attempts))

    # -- internals ------------------------------------------------------------------

    def _prompt_bound(self, messages: list[dict[str, str]]) -> int:
        """The conservative token bound of these chat messages (no tokenizer asked)."""
        return messages_token_bound(
            (m["content"] for m in messages),
            self._config.per_message_overhead,
            self._config.fixed_overhead,
        )

    def _headers(self, stream: bool) -> dict[str, str]:
        headers = dict(self._config.headers)
        headers["Accept"] = "text/event-stream" if stream else "application/json"
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        return headers

    def _body(self, request: WorkRequest, field: MaxTokensField) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model or self._config.model,
            "messages": chat_messages(request),
            field: request.max_tokens,
            "stream": self._config.stream,
        }
        if self._config.stream:
            body["stream_options"] = {"include_usage": True}
        temperature = (request.temperature if request.temperature is not None
                       else self._config.temperature)
        if temperature is not None:
            body["temperature"] = temperature
        return body

    def _failure(self, problem: ParseProblem, attempts: int) -> WorkFailure:
        secret = self._key.reveal() if self._key is not None else None
        return WorkFailure(
            problem.kind,
            problem.code,
            scrub(problem.message, secret),
            retryable=problem.retryable,
            attempts=attempts,
        )

    async def _answer(self, request: WorkRequest, clock: _Clock) -> WorkResult:
        refused = model_not_offered(request, self.models)
        if refused is not None:
            return refused
        limit = self.max_prompt_tokens(request.max_tokens)
        if self._prompt_bound(chat_messages(request)) > limit:
            counted = await self.count_prompt_tokens(request)
            if counted.tokens > limit:
                return prompt_too_long(counted.tokens, limit)
        switched = False
        while True:
            clock.attempts += 1
            outcome = await self._attempt(request, self._max_tokens_field, clock)
            if isinstance(outcome, Completion):
                return await self._to_answer(request, outcome, clock)
            if outcome.code == _SWITCH_FIELD and not switched:
                switched = True
                self._max_tokens_field = "max_completion_tokens"
                log.info("%s: server wants max_completion_tokens; switching", self.name)
                clock.attempts -= 1
                continue
            if not outcome.retryable or clock.attempts >= self._config.max_attempts:
                return self._failure(outcome, clock.attempts)
            delay = self._config.backoff_s * (2 ** (clock.attempts - 1))
            delay *= 0.5 + self._rng.random()
            if outcome.retry_after_s is not None:
                delay = max(delay, outcome.retry_after_s)
            if time.monotonic() + delay >= clock.deadline:
                return self._failure(outcome, clock.attempts)
            log.info(
                "%s: attempt %d failed (%s), retrying in %.2f s",
                self.name,
                clock.attempts,
                outcome.code,
                delay,
            )
            await asyncio.sleep(delay)

    async def _attempt(
        self, request: WorkRequest, field: MaxTokensField, clock: _Clock
    ) -> Completion | ParseProblem:
        cfg = self._config
        remaining = max(0.001, clock.remaining())
        timeout = httpx.Timeout(
            connect=min(cfg.connect_timeout_s, remaining),
            read=min(cfg.read_timeout_s, remaining),
            write=min(cfg.read_timeout_s, remaining),
            pool=min(cfg.connect_timeout_s, remaining),
        )
        try:
            clock.sent_at = time.monotonic()
            async with self._client.stream(
                "POST",
                self._url,
                json=self._body(request, field),
                headers=self._headers(cfg.stream),
                timeout=timeout,
            ) as response:
                if response.status_code != 200:
                    return await self._error_response(response)
                content_type = response.headers.get("content-type", "")
                if content_type.startswith("text/event-stream"):
                    return await self._read_stream(response, clock)
                body = await _read_bounded(response, MAX_BODY_BYTES)
                if body is None:
                    return ParseProblem(FailureKind.MALFORMED, "too_large", "response too large")
                decoded = parse_json_bytes(body)
                if isinstance(decoded, ParseProblem):
                    return decoded
                return parse_completion(decoded)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return ParseProblem(
                FailureKind.UNREACHABLE,
                "connect",
                f"cannot connect to the backend ({type(exc).__name__})",
                retryable=True,
            )
        except httpx.TimeoutException as exc:
            return ParseProblem(
                FailureKind.TIMED_OUT,
                "stalled",
                f"the backend stopped answering ({type(exc).__name__})",
            )
        except (
            httpx.RemoteProtocolError,
            httpx.ReadError,
            httpx.WriteError,
            httpx.CloseError,
        ) as exc:
            return ParseProblem(
                FailureKind.UNREACHABLE,
                "interrupted",
                f"the connection was lost during the answer ({type(exc).__name__})",
            )
        except httpx.HTTPError as exc:
            return ParseProblem(
                FailureKind.UNREACHABLE, "transport", f"HTTP transport error ({type(exc).__name__})"
            )

    async def _error_response(self, response: httpx.Response) -> ParseProblem:
        status = response.status_code
        raw = await _read_bounded(response, MAX_ERROR_BODY_BYTES)
        error: object = None
        if raw:
            decoded = parse_json_bytes(raw)
            if isinstance(decoded, dict):
                error = decoded.get("error", decoded.get("message"))
            elif not isinstance(decoded, ParseProblem):
                error = str(decoded)
            else:
                error = raw.decode("utf-8", errors="replace")
        if self._max_tokens_field == "max_tokens" and names_max_completion_tokens(status, error):
            return ParseProblem(FailureKind.REFUSED, _SWITCH_FIELD, "max_tokens not supported")
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return classify_error(status, error, retry_after)

    async def _read_stream(
        self, response: httpx.Response, clock: _Clock
    ) -> Completion | ParseProblem:
        state = StreamState()
        size = 0
        lines = response.aiter_lines()
        async for line in lines:
            size += len(line)
            if size > MAX_BODY_BYTES:
                return ParseProblem(FailureKind.MALFORMED, "too_large", "response too large")
            problem = state.feed(line)
            if problem is not None:
                return problem
            if state.saw_content and clock.first_token_at is None:
                clock.first_token_at = time.monotonic()
            if state.done:
                await _drain(lines, MAX_BODY_BYTES - size)
                break
        return state.result()

    async def _to_answer(
        self, request: WorkRequest, completion: Completion, clock: _Clock
    ) -> WorkResult:
        text, reason = check_answer_text(completion.text, request.question)
        if reason is not None:
            return unusable_answer(reason, clock.attempts)
        usage = completion.usage
        source: UsageSource
        if usage is not None:
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
            source = "reported"
            if completion_tokens > request.max_tokens:
                log.warning(
                    "%s reported %d completion tokens above max_tokens=%d",
                    self.name,
                    completion_tokens,
                    request.max_tokens,
                )
        else:
            prompt_tokens = (await self.count_prompt_tokens(request)).tokens
            completion_tokens = await self._count_completion(completion.text, request.max_tokens)
            source = "counted"
        now = time.monotonic()
        sent = clock.sent_at if clock.sent_at is not None else clock.start
        first = clock.first_token_at
        return Answer(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=completion.model or self._config.model,
            timings=Timings(
                queued_s=sent - clock.start,
                first_token_s=None if first is None else first - clock.start,
                total_s=now - clock.start,
            ),
            usage_source=source,
            truncated=completion.finish_reason == "length",
            attempts=clock.attempts,
        )

    async def _count_completion(self, text: str, max_tokens: int) -> int:
        if self._tokenizer:
            counted = await self._tokenize(text, add_special=False)
            if counted is not None:
                return min(counted, max_tokens)
        return min(text_token_bound(text), max_tokens)

    async def _post_tool(self, path: ToolPath, payload: dict[str, Any]) -> object | None:
        """POST to a llama.cpp helper endpoint; ``None`` when unavailable (and remembered as
        unsupported when the server says it does not exist)."""
        timeout = httpx.Timeout(self._config.connect_timeout_s)
        try:
            async with self._tool_calls:
                response = await self._client.post(
                    self._tool_urls[path],
                    json=payload,
                    headers=self._headers(stream=False),
                    timeout=timeout,
                )
        except httpx.HTTPError:
            return None
        if 400 <= response.status_code < 500 or response.status_code == 501:
            self._tokenizer = False  # not a llama.cpp server: use the bound from now on
            return None
        if response.status_code != 200 or len(response.content) > MAX_BODY_BYTES:
            return None
        decoded = parse_json_bytes(response.content)
        return None if isinstance(decoded, ParseProblem) else decoded

    async def _tokenize(self, content: str, add_special: bool) -> int | None:
        decoded = await self._post_tool(
            "/tokenize", {"content": content, "add_special": add_special, "parse_special": True}
        )
        if not isinstance(decoded, dict) or not isinstance(decoded.get("tokens"), list):
            if decoded is not None:
                self._tokenizer = False
            return None
        self._tokenizer = True
        return len(decoded["tokens"])

    async def _tokenize_chat(self, messages: list[dict[str, str]]) -> int | None:
        decoded = await self._post_tool("/apply-template", {"messages": messages})
        if not isinstance(decoded, dict) or not isinstance(decoded.get("prompt"), str):
            if decoded is not None:
                self._tokenizer = False
            return None
        return await self._tokenize(decoded["prompt"], add_special=True)
