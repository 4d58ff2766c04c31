"""The conservative token bound holds against two real tokenizers' shapes (the test server's
word tokenizer here; the embedded model's real tokenizer in test_local_model)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.work.tokens import messages_token_bound, text_token_bound
from tests.fixtures.ai_server import apply_template, count_tokens


def test_bound_counts_utf8_bytes() -> None:
    assert text_token_bound("") == 1
    assert text_token_bound("abc") == 4
    assert text_token_bound("é") == 3
    assert text_token_bound("🙂") == 5


def test_bound_of_lone_surrogates_does_not_crash() -> None:
    assert text_token_bound("\ud800") == 4


@given(st.lists(st.text(max_size=200), min_size=1, max_size=6))
def test_message_bound_is_above_the_templated_count(contents: list[str]) -> None:
    messages = [{"role": "user", "content": c} for c in contents]
    assert count_tokens(apply_template(messages)) + 1 <= messages_token_bound(contents)
