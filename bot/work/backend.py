"""The one interface every AI backend implements.

A backend is any object satisfying :class:`Backend`:

- ``answer(request)`` → :data:`~bot.work.result.WorkResult`: an
  :class:`~bot.work.result.Answer` (text, prompt and completion tokens as the backend reported
  them, model, timings) or a :class:`~bot.work.result.WorkFailure`. It never raises for a
  backend problem and never returns a partial answer.
- ``count_prompt_tokens(request)`` → :class:`~bot.work.result.TokenCount` (exact with the
  backend's tokenizer when it has one, else a conservative bound), used by
  :func:`bot.work.estimate.estimate` for a quote before any work.
- ``max_prompt_tokens`` — the largest prompt it accepts with the request's ``max_tokens``.
- ``default_max_tokens`` — the configured output cap.
- ``models`` — the model names a request may pick (``WorkRequest.model``), the default first;
  a request naming another one gets a ``REFUSED`` failure, from the estimate on.
- ``aclose()`` releases what the backend opened itself (never an injected HTTP client; never
  the shared embedded model, which lives as long as the process).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from bot.work.result import TokenCount, WorkRequest, WorkResult


@runtime_checkable
class Backend(Protocol):
    @property
    def name(self) -> str:
        """A short label for logs (``"openai:<model>"``, ``"local:<model>"``)."""
        ...

    @property
    def default_max_tokens(self) -> int: ...

    @property
    def models(self) -> tuple[str, ...]: ...

    def max_prompt_tokens(self, max_tokens: int) -> int: ...

    async def count_prompt_tokens(self, request: WorkRequest) -> TokenCount: ...

    async def answer(self, request: WorkRequest) -> WorkResult: ...

    async def aclose(self) -> None: ...
