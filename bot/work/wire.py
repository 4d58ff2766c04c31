"""The OpenAI chat-completions wire format, sans I/O: request bodies, response parsing, the
server-sent-events stream, and HTTP error classification.

Servers differ in small ways, all handled here:

- ``usage`` may be missing (older Ollama, some proxies), present in every stream chunk, only in
  the chunk that carries ``finish_reason`` (llama.cpp), or only in a last chunk with empty
  ``choices`` (OpenAI with ``stream_options.include_usage``); the last one seen wins.
- an error may come as an HTTP status, as a 200 body with an ``error`` object (OpenRouter), or
  as an ``error`` event in the middle of a stream.
- a refusal may be ``finish_reason: "content_filter"`` or a ``message.refusal`` string.
- comments (``: keep-alive``) and ``event:`` lines may appear in streams.

Nothing here raises on bad input: parsers return a :class:`ParseProblem`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.untrusted import load_json
from bot.work.result import FailureKind

MAX_ERROR_DETAIL = 200
MAX_BODY_BYTES = 8 * 1024 * 1024
"""The largest answer body read from a backend (and parsed as JSON)."""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Completion:
    """A complete answer as the server sent it (before text checks)."""

    text: str
    finish_reason: str
    usage: Usage | None
    model: str | None


@dataclass(frozen=True, slots=True)
class ParseProblem:
    """Why a response cannot be used; maps onto a :class:`~bot.work.result.WorkFailure`."""

    kind: FailureKind
    code: str
    message: str
    retryable: bool = False
    retry_after_s: float | None = None


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def parse_usage(value: object) -> Usage | None:
    """``{"prompt_tokens": int, "completion_tokens": int}`` or ``None`` when absent/invalid."""
    if not isinstance(value, dict):
        return None
    prompt = _count(value.get("prompt_tokens"))
    completion = _count(value.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    return Usage(prompt, completion)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text[:MAX_ERROR_DETAIL] + ("…" if len(text) > MAX_ERROR_DETAIL else "")


def _error_text(error: object) -> tuple[str, str]:
    """(code or type, message) from an OpenAI-style ``error`` value."""
    if isinstance(error, dict):
        code = error.get("code") or error.get("type") or ""
        message = error.get("message") or ""
        return str(code), _short(str(message))
    if isinstance(error, str):
        return "", _short(error)
    return "", ""


_CONTENT_MARKERS = ("content_policy", "content_filter", "safety", "moderation", "flagged")
_QUOTA_MARKERS = ("insufficient_quota", "quota", "credits", "billing")
_CONTEXT_MARKERS = ("context_length", "context length", "too many tokens", "maximum context")


def classify_error(status: int, error: object, retry_after_s: float | None) -> ParseProblem:
    """Classify an HTTP error status (or a 200 carrying an ``error`` object, ``status=200``).

    Retryable only when the server told us the attempt did not run: 408, 429 (unless the
    quota is exhausted), 500, 502, 503. 504 is not retried: a gateway timed out, the model
    behind it may still be generating (and billing).
    """
    if status == 200:
        # an error inside a 200 body (OpenRouter): classify by its own code, never retry
        inner = error.get("code") if isinstance(error, dict) else None
        if isinstance(inner, int) and not isinstance(inner, bool) and 400 <= inner <= 599:
            problem = classify_error(inner, error, None)
            return ParseProblem(problem.kind, problem.code, problem.message)
    code, message = _error_text(error)
    lowered = f"{code} {message}".lower()
    detail = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if any(m in lowered for m in _CONTEXT_MARKERS):
        return ParseProblem(FailureKind.OVER_BUDGET, "context_length", detail)
    if any(m in lowered for m in _CONTENT_MARKERS):
        return ParseProblem(FailureKind.REFUSED, "content", detail)
    if status in (401, 403):
        return ParseProblem(FailureKind.REFUSED, "auth", detail)
    if status == 402 or (status == 429 and any(m in lowered for m in _QUOTA_MARKERS)):
        return ParseProblem(FailureKind.REFUSED, "quota", detail)
    if status == 429:
        return ParseProblem(
            FailureKind.REFUSED, "rate_limited", detail, retryable=True, retry_after_s=retry_after_s
        )
    if status == 408:
        return ParseProblem(FailureKind.TIMED_OUT, "http_408", detail, retryable=True)
    if status == 504:
        return ParseProblem(FailureKind.TIMED_OUT, "http_504", detail)
    if status in (500, 502, 503):
        return ParseProblem(
            FailureKind.UNREACHABLE,
            f"http_{status}",
            detail,
            retryable=True,
            retry_after_s=retry_after_s,
        )
    if status == 404:
        return ParseProblem(FailureKind.REFUSED, "not_found", detail)
    if 400 <= status < 500:
        return ParseProblem(FailureKind.REFUSED, "bad_request", detail)
    if status >= 500:
        return ParseProblem(FailureKind.UNREACHABLE, f"http_{status}", detail)
    return ParseProblem(FailureKind.MALFORMED, "error_body", detail)


def names_max_completion_tokens(status: int, error: object) -> bool:
    """Whether a 400 says ``max_tokens`` is unsupported and ``max_completion_tokens`` wanted."""
    if status != 400:
        return False
    code, message = _error_text(error)
    text = f"{code} {message}".lower()
    return "max_completion_tokens" in text and "max_tokens" in text.replace(
        "max_completion_tokens", ""
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds (HTTP dates are ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86_400 else None


class _NotJson(Exception):
    pass


def parse_json_bytes(data: bytes) -> object | ParseProblem:
    try:
        return load_json(data, max_chars=MAX_BODY_BYTES, error=_NotJson, what="response")
    except _NotJson:
        return ParseProblem(FailureKind.MALFORMED, "not_json", "the response is not JSON")


def parse_completion(payload: object) -> Completion | ParseProblem:
    """A non-streamed chat completion body (already JSON-decoded)."""
    if not isinstance(payload, dict):
        return ParseProblem(FailureKind.MALFORMED, "shape", "the response is not a JSON object")
    if payload.get("error") is not None:
        return classify_error(200, payload["error"], None)
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ParseProblem(FailureKind.MALFORMED, "shape", "the response has no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        return ParseProblem(FailureKind.MALFORMED, "shape", "the choice has no message")
    finish = choice.get("finish_reason")
    refusal = message.get("refusal")
    if finish == "content_filter" or (isinstance(refusal, str) and refusal):
        return ParseProblem(FailureKind.REFUSED, "content", "the backend refused the content")
    content = message.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        return ParseProblem(FailureKind.MALFORMED, "shape", "the message content is not text")
    if not isinstance(finish, str) or not finish:
        return ParseProblem(FailureKind.MALFORMED, "no_finish", "the choice has no finish_reason")
    model = payload.get("model")
    return Completion(
        content,
        finish,
        parse_usage(payload.get("usage")),
        model if isinstance(model, str) else None,
    )


@dataclass(slots=True)
class StreamState:
    """Accumulates a server-sent-events chat-completion stream, one line at a time.

    ``feed(line)`` returns a :class:`ParseProblem` as soon as the stream is unusable (garbage,
    an error event, a refusal), else ``None``. After the transport ends, :meth:`result` gives the
    :class:`Completion`, or a problem when the stream stopped before a ``finish_reason`` (an
    interrupted answer is never passed off as complete).
    """

    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    done: bool = False
    saw_content: bool = False

    def feed(self, line: str) -> ParseProblem | None:
        line = line.rstrip("\r\n")
        if not line or line.startswith(":") or self.done:
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name in ("event", "id", "retry"):
            return None
        if name != "data":
            return ParseProblem(FailureKind.MALFORMED, "stream_garbage", "not an SSE stream")
        if value.strip() == "[DONE]":
            self.done = True
            return None
        decoded = parse_json_bytes(value.encode("utf-8", errors="surrogatepass"))
        if isinstance(decoded, ParseProblem):
            return ParseProblem(
                FailureKind.MALFORMED, "stream_garbage", "a stream event is not JSON"
            )
        return self._chunk(decoded)

    def _chunk(self, chunk: object) -> ParseProblem | None:
        if not isinstance(chunk, dict):
            return ParseProblem(FailureKind.MALFORMED, "shape", "a stream event is not an object")
        if chunk.get("error") is not None:
            problem = classify_error(200, chunk["error"], None)
            if problem.kind is FailureKind.UNREACHABLE or self.parts:
                # the server started and then failed: never retried
                return ParseProblem(FailureKind.UNREACHABLE, "interrupted", problem.message)
            return ParseProblem(problem.kind, problem.code, problem.message)
        usage = parse_usage(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        model = chunk.get("model")
        if isinstance(model, str) and model:
            self.model = model
        choices = chunk.get("choices")
        if choices is None or choices == []:
            return None
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            return ParseProblem(FailureKind.MALFORMED, "shape", "a stream event has bad choices")
        choice = choices[0]
        delta = choice.get("delta")
        if delta is None:
            delta = {}
        if not isinstance(delta, dict):
            return ParseProblem(FailureKind.MALFORMED, "shape", "a stream delta is not an object")
        refusal = delta.get("refusal")
        if choice.get("finish_reason") == "content_filter" or (
            isinstance(refusal, str) and refusal
        ):
            return ParseProblem(FailureKind.REFUSED, "content", "the backend refused the content")
        content = delta.get("content")
        if content is not None:
            if not isinstance(content, str):
                return ParseProblem(FailureKind.MALFORMED, "shape", "a stream delta is not text")
            if content:
                self.parts.append(content)
                self.saw_content = True
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self.finish_reason = finish
        return None

    def result(self) -> Completion | ParseProblem:
        if self.finish_reason is None:
            return ParseProblem(
                FailureKind.UNREACHABLE,
                "interrupted",
                "the stream ended before the answer was complete",
            )
        return Completion("".join(self.parts), self.finish_reason, self.usage, self.model)


def scrub(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (and of its 8-character ends) masked."""
    if not secret:
        return text
    text = text.replace(secret, "***")
    if len(secret) >= 16:
        for piece in (secret[:8], secret[-8:]):
            text = text.replace(piece, "***")
    return text
