"""What a backend is asked (:class:`WorkRequest`) and what it gives back (:data:`WorkResult`).

A backend returns either an :class:`Answer` (complete text and the token usage to charge) or a
:class:`WorkFailure` whose :class:`FailureKind` tells the job flow what happened. A partial
answer is never returned as an :class:`Answer`: an interrupted stream is a failure.

``WorkFailure.retryable`` is true only when the backend certainly did not generate anything
(the request never reached it, or it answered that it did not run it): trying again cannot
produce a second charged answer. Backends already retry such failures themselves, within the
request's deadline, so the job flow normally just refunds on any failure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from bot.work.errors import InvalidWorkRequest

Role = Literal["user", "assistant"]

MAX_QUESTION_CHARS = 32_000
MAX_TEMPERATURE = 2.0
MAX_MODEL_CHARS = 128
"""A question longer than this is refused at construction (the caller should have said no)."""


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier message of the asker's short history."""

    role: Role
    text: str

    def __post_init__(self) -> None:
        if self.role not in ("user", "assistant"):
            raise InvalidWorkRequest("history role must be 'user' or 'assistant'")
        if not isinstance(self.text, str):
            raise InvalidWorkRequest("history text must be a string")


@dataclass(frozen=True, slots=True)
class WorkRequest:
    """A question for a backend.

    ``max_tokens`` caps the completion (it is always sent to the backend, so the actual cost
    never exceeds the estimate); ``timeout_s`` is the deadline, in seconds from the call, for the
    whole request including queueing and retries. ``temperature`` (0 to 2) overrides the
    backend's configured sampling temperature; ``model`` picks one of the backend's ``models``
    (``None``: its default). Both are part of what is estimated: the same request is counted for
    the quote and sent for the answer.
    """

    question: str
    max_tokens: int
    timeout_s: float
    system: str | None = None
    history: tuple[Turn, ...] = field(default_factory=tuple)
    temperature: float | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.question, str) or not self.question.strip():
            raise InvalidWorkRequest("question must be a non-empty string")
        if len(self.question) > MAX_QUESTION_CHARS:
            raise InvalidWorkRequest(f"question longer than {MAX_QUESTION_CHARS} characters")
        if (
            not isinstance(self.max_tokens, int)
            or isinstance(self.max_tokens, bool)
            or self.max_tokens < 1
        ):
            raise InvalidWorkRequest("max_tokens must be an integer >= 1")
        if (
            not isinstance(self.timeout_s, int | float)
            or isinstance(self.timeout_s, bool)
            or not math.isfinite(self.timeout_s)
            or self.timeout_s <= 0
        ):
            raise InvalidWorkRequest("timeout_s must be a positive number of seconds")
        if self.system is not None and not isinstance(self.system, str):
            raise InvalidWorkRequest("system must be a string or None")
        if not isinstance(self.history, tuple) or not all(
            isinstance(t, Turn) for t in self.history
        ):
            raise InvalidWorkRequest("history must be a tuple of Turn")
        if self.temperature is not None and (
            not isinstance(self.temperature, int | float)
            or isinstance(self.temperature, bool)
            or not 0 <= self.temperature <= MAX_TEMPERATURE  # NaN fails both
        ):
            raise InvalidWorkRequest(f"temperature must be a number from 0 to {MAX_TEMPERATURE}")
        if self.model is not None and (
            not isinstance(self.model, str)
            or not self.model
            or len(self.model) > MAX_MODEL_CHARS
            or not self.model.isprintable()
        ):
            raise InvalidWorkRequest("model must be a short printable name")


@dataclass(frozen=True, slots=True)
class Timings:
    """Seconds spent: waiting for the backend (queue, connection), until the first token
    (streaming only, else ``None``), and in total. Measured with a monotonic clock."""

    queued_s: float
    first_token_s: float | None
    total_s: float


UsageSource = Literal["reported", "counted"]


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete answer and the usage to charge.

    ``usage_source`` is ``"reported"`` when the backend reported the token counts, ``"counted"``
    when it did not and they were counted here (the prompt as estimated, the completion with the
    backend's tokenizer or a conservative bound, never above ``max_tokens``).
    ``truncated`` is true when generation stopped at ``max_tokens``.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    timings: Timings
    usage_source: UsageSource = "reported"
    truncated: bool = False
    attempts: int = 1


class FailureKind(StrEnum):
    UNREACHABLE = "unreachable"
    """No answer could be obtained: connection refused or lost, server error (``code`` says)."""
    TIMED_OUT = "timed_out"
    """The deadline passed (or the backend stalled) before a complete answer."""
    REFUSED = "refused"
    """The backend understood and said no: content policy, quota, authentication, bad request."""
    MALFORMED = "malformed"
    """The backend answered something unusable: garbage, wrong shape, empty text, an echo."""
    OVER_BUDGET = "over_budget"
    """The request does not fit: the prompt plus ``max_tokens`` exceed what the backend takes."""


@dataclass(frozen=True, slots=True)
class WorkFailure:
    """Why there is no answer. ``message`` is safe to log (no secrets); ``code`` is a short
    machine-readable reason (``"connect"``, ``"http_503"``, ``"interrupted"``, ``"content"``...).
    """

    kind: FailureKind
    code: str
    message: str
    retryable: bool = False
    attempts: int = 1


WorkResult = Answer | WorkFailure


def prompt_too_long(tokens: int, limit: int) -> WorkFailure:
    """The ``OVER_BUDGET`` failure for a prompt of ``tokens`` above ``limit`` (nothing sent)."""
    return WorkFailure(
        FailureKind.OVER_BUDGET,
        "prompt_too_long",
        f"the prompt ({tokens} tokens) exceeds {limit} tokens",
        attempts=0,
    )


def model_not_offered(request: WorkRequest, models: tuple[str, ...]) -> WorkFailure | None:
    """The ``REFUSED`` failure for a request naming a model that is not in ``models`` (nothing
    sent), else ``None``."""
    if request.model is None or request.model in models:
        return None
    return WorkFailure(
        FailureKind.REFUSED,
        "model_not_offered",
        f"model {request.model[:40]!r} is not offered (offered: {', '.join(models)})",
        attempts=0,
    )


def timed_out(timeout_s: float, code: str = "deadline", attempts: int = 1) -> WorkFailure:
    """The ``TIMED_OUT`` failure for a request whose ``timeout_s`` deadline passed."""
    return WorkFailure(
        FailureKind.TIMED_OUT, code, f"no complete answer within {timeout_s:g} s", attempts=attempts
    )


@dataclass(frozen=True, slots=True)
class TokenCount:
    """A prompt's token count: ``exact`` when the backend's tokenizer counted it, else a
    conservative upper bound."""

    tokens: int
    exact: bool
