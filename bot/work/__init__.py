"""The work: AI backends that report real token usage, and the pricing that turns tokens into
millisatoshis (SPEC §4).

Modules:

- ``result``  — :class:`WorkRequest` in; :class:`Answer` or :class:`WorkFailure` out
  (:class:`FailureKind`: unreachable, timed out, refused, malformed, over budget).
- ``backend`` — the :class:`Backend` protocol every backend satisfies.
- ``openai_compat`` — :class:`OpenAIBackend`, any OpenAI-compatible server over httpx.
- ``local``   — :class:`LocalBackend`, the embedded llama.cpp model (extra ``local``).
- ``selection`` — :func:`make_backend`: the endpoint if configured, else the embedded model.
- ``config``  — :class:`OpenAIConfig`, :class:`LocalModelConfig` (plain dataclasses).
- ``pricing`` — :class:`Pricing` (integer msat), :class:`Estimate`, :class:`Charge`.
- ``estimate`` — :func:`estimate` (a quote before work), :func:`charge_for` (after it).
- ``prompt``, ``tokens``, ``wire``, ``apikey`` — prompt building and answer checks, the
  conservative token bound, the OpenAI wire format (sans I/O), API key loading.

Exceptions (configuration and programming errors only) are in ``errors``.
"""

from bot.work.backend import Backend
from bot.work.config import LocalModelConfig, OpenAIConfig
from bot.work.errors import (
    ApiKeyError,
    InvalidWorkRequest,
    LocalModelUnavailable,
    PricingError,
    WorkConfigError,
    WorkError,
)
from bot.work.estimate import charge_for, estimate
from bot.work.pricing import Charge, Estimate, Pricing
from bot.work.result import (
    Answer,
    FailureKind,
    Timings,
    TokenCount,
    Turn,
    WorkFailure,
    WorkRequest,
    WorkResult,
)
from bot.work.selection import make_backend

__all__ = [
    "Answer",
    "ApiKeyError",
    "Backend",
    "Charge",
    "Estimate",
    "FailureKind",
    "InvalidWorkRequest",
    "LocalModelConfig",
    "LocalModelUnavailable",
    "OpenAIConfig",
    "Pricing",
    "PricingError",
    "Timings",
    "TokenCount",
    "Turn",
    "WorkConfigError",
    "WorkError",
    "WorkFailure",
    "WorkRequest",
    "WorkResult",
    "charge_for",
    "estimate",
    "make_backend",
]
