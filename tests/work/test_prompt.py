"""Prompt building and answer checks."""

from __future__ import annotations

from bot.work.prompt import FEW_SHOT_EXAMPLES, chat_messages, check_answer_text, few_shot_prompt
from bot.work.result import Turn, WorkRequest


def _request(**kw: object) -> WorkRequest:
    return WorkRequest(question="What is\nthe capital\nof Peru?", max_tokens=8, timeout_s=5, **kw)  # type: ignore[arg-type]


def test_chat_messages_in_order() -> None:
    request = _request(
        system="Be brief.",
        history=(Turn("user", "hi"), Turn("assistant", "hello")),
    )
    assert chat_messages(request) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "What is\nthe capital\nof Peru?"},
    ]


def test_few_shot_prompt_ends_with_the_question_on_one_line() -> None:
    prompt = few_shot_prompt(_request(history=(Turn("user", "2+2?"), Turn("assistant", "4"))))
    assert prompt.endswith("Q: What is the capital of Peru?\nA:")
    assert "Q: 2+2?\nA: 4\n" in prompt
    for question, answer in FEW_SHOT_EXAMPLES:
        assert f"Q: {question}\nA: {answer}" in prompt
    # the question cannot add lines of its own to the frame
    assert prompt.count("\nA:") == len(FEW_SHOT_EXAMPLES) + 2


def test_answer_checks() -> None:
    assert check_answer_text("  Lima is the capital.\n", "capital of Peru?") == (
        "Lima is the capital.",
        None,
    )
    assert check_answer_text("   ", "q")[1] == "empty"
    assert check_answer_text(" ... ", "q")[1] == "empty"
    assert (
        check_answer_text("What is the capital of Peru", "What is the capital of Peru?")[1]
        == "echo"
    )
    assert check_answer_text("Q: another question", "x")[1] == "echo"
