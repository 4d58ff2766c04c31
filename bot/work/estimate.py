"""Quotes before any work, and charges after it.

:func:`estimate` counts the prompt (the backend's tokenizer where it offers one, else the
conservative bound of :mod:`bot.work.tokens`) and adds the whole output cap ``max_tokens``:
since the backend is always asked for at most ``max_tokens``, the actual price cannot exceed
the quote. :func:`charge_for` prices an :class:`~bot.work.result.Answer` against its quote
(capped at it, see :func:`bot.work.pricing.settle`).
"""

from __future__ import annotations

import logging

from bot.work.backend import Backend
from bot.work.pricing import Charge, Estimate, Pricing, estimate_price, settle
from bot.work.result import Answer, WorkFailure, WorkRequest, model_not_offered, prompt_too_long

log = logging.getLogger(__name__)


async def estimate(
    backend: Backend, request: WorkRequest, pricing: Pricing
) -> Estimate | WorkFailure:
    """The quote for ``request`` on ``backend``; an ``OVER_BUDGET`` failure when the prompt does
    not fit the backend with this ``max_tokens``, a ``REFUSED`` one for a model the backend
    does not offer. Reads nothing but the prompt; runs no model. The prompt is counted for the
    request's own model; the price per token is the one [pricing] for every offered model."""
    refused = model_not_offered(request, backend.models)
    if refused is not None:
        return refused
    counted = await backend.count_prompt_tokens(request)
    limit = backend.max_prompt_tokens(request.max_tokens)
    if counted.tokens > limit:
        return prompt_too_long(counted.tokens, limit)
    return estimate_price(pricing, counted.tokens, counted.exact, request.max_tokens)


def charge_for(pricing: Pricing, quote: Estimate, answer: Answer) -> Charge:
    """What to charge for ``answer`` given the quote: its actual price, at most the quote."""
    charge = settle(pricing, quote, answer.prompt_tokens, answer.completion_tokens)
    if charge.capped:
        log.warning(
            "usage %d+%d tokens costs %d msat, above the quote of %d msat: charging the quote",
            answer.prompt_tokens,
            answer.completion_tokens,
            charge.computed_msat,
            quote.amount_msat,
        )
    return charge
