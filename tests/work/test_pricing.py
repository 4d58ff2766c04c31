"""Pricing: integer msat, rounding up once, monotonic, capped at the quote."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.work.errors import PricingError
from bot.work.pricing import Estimate, Pricing, estimate_price, settle


def test_price_is_prompt_times_input_plus_completion_times_output_plus_fee() -> None:
    pricing = Pricing.per_token(input_msat=2, output_msat=5, fixed_fee_msat=1000)
    assert pricing.price_msat(10, 20) == 10 * 2 + 20 * 5 + 1000
    assert pricing.price_msat(0, 0) == 1000


def test_per_thousand_tokens_rounds_up_to_whole_msat() -> None:
    pricing = Pricing(input_msat=150, output_msat=600, fixed_fee_msat=0)  # per 1000 tokens
    assert pricing.price_msat(1, 0) == 1  # 0.15 msat -> 1
    assert pricing.price_msat(1000, 1000) == 750
    assert pricing.price_msat(1001, 0) == 151  # 150.15 -> 151
    assert pricing.price_msat(3, 1) == 2  # (450 + 600) / 1000 = 1.05 -> 2
    assert isinstance(pricing.price_msat(7, 3), int)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_msat": -1},
        {"output_msat": -5},
        {"fixed_fee_msat": -1},
        {"per_tokens": 0},
        {"input_msat": 1.5},
        {"output_msat": True},
        {"fixed_fee_msat": "10"},
    ],
)
def test_bad_prices_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(PricingError):
        Pricing(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("counts", [(-1, 0), (0, -1), (1.0, 0), (True, 0)])
def test_bad_token_counts_are_refused(counts: tuple[object, object]) -> None:
    with pytest.raises(PricingError):
        Pricing.per_token(1, 1).price_msat(*counts)  # type: ignore[arg-type]


prices = st.integers(min_value=0, max_value=10**7)
counts = st.integers(min_value=0, max_value=10**6)


@given(
    prices, prices, prices, st.sampled_from([1, 10, 1000, 10**6]), counts, counts, counts, counts
)
def test_fewer_tokens_never_cost_more(
    inp: int, out: int, fee: int, per: int, p: int, c: int, dp: int, dc: int
) -> None:
    pricing = Pricing(inp, out, fee, per)
    assert pricing.price_msat(p, c) <= pricing.price_msat(p + dp, c + dc)
    exact_numerator = p * inp + c * out
    price = pricing.price_msat(p, c)
    # rounded up, by less than one msat
    assert (price - fee) * per >= exact_numerator > (price - fee - 1) * per or exact_numerator == 0


@given(prices, prices, prices, counts, counts, counts, counts)
def test_settle_never_exceeds_the_quote(
    inp: int, out: int, fee: int, quoted_prompt: int, cap: int, p: int, c: int
) -> None:
    pricing = Pricing(inp, out, fee)
    quote = estimate_price(pricing, quoted_prompt, False, cap)
    charge = settle(pricing, quote, p, c)
    assert charge.amount_msat <= quote.amount_msat
    assert charge.computed_msat == pricing.price_msat(p, c)
    assert charge.capped == (charge.computed_msat > quote.amount_msat)
    if p <= quoted_prompt and c <= cap:
        assert not charge.capped
        assert charge.amount_msat == pricing.price_msat(p, c)


def test_a_backend_that_overshoots_is_charged_the_quote_only() -> None:
    pricing = Pricing.per_token(1, 10)
    quote = Estimate(prompt_tokens=10, prompt_exact=True, max_completion_tokens=5, amount_msat=60)
    charge = settle(pricing, quote, 12, 50)
    assert charge.capped
    assert charge.amount_msat == 60
    assert charge.computed_msat == 512
