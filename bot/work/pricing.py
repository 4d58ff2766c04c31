"""Pricing: tokens to millisatoshis, integer arithmetic only.

``price = ceil((prompt_tokens × input + completion_tokens × output) / per_tokens) + fixed_fee``

where ``input`` and ``output`` are msat per ``per_tokens`` tokens (default 1000, so cheap models
can be priced below 1 msat per token without floats). The division rounds **up** once, on the
sum, so the price is monotonic in both token counts: fewer actual tokens than estimated can
never cost more than the estimate.

:func:`settle` turns an answer's usage into the amount to charge, capped at the estimate the
asker was quoted (a backend that ignores ``max_tokens`` or counts the prompt differently costs
the operator, never the asker; ``Charge.capped`` says when that happened).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.work.errors import PricingError


def _check_count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PricingError(f"{name} must be an integer >= 0")
    return value


@dataclass(frozen=True, slots=True)
class Pricing:
    """Prices in msat, integers ≥ 0, from configuration.

    ``input_msat`` / ``output_msat`` are per ``per_tokens`` prompt / completion tokens
    (``per_tokens=1`` means per token; the default 1000 means per thousand tokens).
    ``fixed_fee_msat`` is added to every answer.
    """

    input_msat: int = 0
    output_msat: int = 0
    fixed_fee_msat: int = 0
    per_tokens: int = 1000

    def __post_init__(self) -> None:
        _check_count("input_msat", self.input_msat)
        _check_count("output_msat", self.output_msat)
        _check_count("fixed_fee_msat", self.fixed_fee_msat)
        _check_count("per_tokens", self.per_tokens)
        if self.per_tokens == 0:
            raise PricingError("per_tokens must be >= 1")

    @classmethod
    def per_token(cls, input_msat: int, output_msat: int, fixed_fee_msat: int = 0) -> Pricing:
        """Prices given in msat per single token."""
        return cls(input_msat, output_msat, fixed_fee_msat, per_tokens=1)

    def price_msat(self, prompt_tokens: int, completion_tokens: int) -> int:
        """The price of an answer with these token counts, rounded up to whole msat."""
        _check_count("prompt_tokens", prompt_tokens)
        _check_count("completion_tokens", completion_tokens)
        variable = prompt_tokens * self.input_msat + completion_tokens * self.output_msat
        return -(-variable // self.per_tokens) + self.fixed_fee_msat


@dataclass(frozen=True, slots=True)
class Estimate:
    """A quote made before any work: the prompt's tokens (``prompt_exact`` when counted by the
    backend's tokenizer, else an upper bound) plus the whole output cap."""

    prompt_tokens: int
    prompt_exact: bool
    max_completion_tokens: int
    amount_msat: int


def estimate_price(
    pricing: Pricing, prompt_tokens: int, prompt_exact: bool, max_tokens: int
) -> Estimate:
    """The quote for a prompt of ``prompt_tokens`` and a completion capped at ``max_tokens``."""
    amount = pricing.price_msat(prompt_tokens, max_tokens)
    return Estimate(prompt_tokens, prompt_exact, max_tokens, amount)


@dataclass(frozen=True, slots=True)
class Charge:
    """What to charge for an answer: ``amount_msat`` = min(``computed_msat``, the estimate)."""

    amount_msat: int
    computed_msat: int
    capped: bool


def settle(
    pricing: Pricing, estimate: Estimate, prompt_tokens: int, completion_tokens: int
) -> Charge:
    """The charge for the actual usage, never above ``estimate.amount_msat``."""
    computed = pricing.price_msat(prompt_tokens, completion_tokens)
    if computed > estimate.amount_msat:
        return Charge(estimate.amount_msat, computed, capped=True)
    return Charge(computed, computed, capped=False)
