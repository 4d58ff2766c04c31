"""Turning a :class:`WorkRequest` into what a backend reads, and checking what comes back.

- :func:`chat_messages` — the OpenAI ``messages`` list: system, history, question.
- :func:`few_shot_prompt` — a raw completion prompt for a *base* model (the embedded one):
  a preamble, a few ``Q:``/``A:`` examples, the history as earlier pairs, then ``Q: <question>``
  and ``A:``; the stop sequence ``"\\n"`` ends the answer at the end of its line.
- :func:`check_answer_text` — trims an answer and rejects it when empty or a mere echo of the
  question (a base model's favourite failure).
"""

from __future__ import annotations

import re

from bot.work.result import FailureKind, WorkFailure, WorkRequest

DEFAULT_PREAMBLE = (
    "The following are questions answered by a knowledgeable, helpful assistant. "
    "Each answer is short, correct and written in plain English."
)

FEW_SHOT_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "What is the boiling point of water at sea level?",
        "Water boils at 100 degrees Celsius (212 degrees Fahrenheit) at sea level.",
    ),
    (
        "Who wrote the novel Pride and Prejudice?",
        "Jane Austen wrote Pride and Prejudice; it was published in 1813.",
    ),
    (
        "How many legs does a spider have?",
        "A spider has eight legs.",
    ),
)

FEW_SHOT_STOP: tuple[str, ...] = ("\n",)


def chat_messages(request: WorkRequest) -> list[dict[str, str]]:
    """The chat ``messages`` for an OpenAI-compatible endpoint."""
    messages: list[dict[str, str]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for turn in request.history:
        messages.append({"role": turn.role, "content": turn.text})
    messages.append({"role": "user", "content": request.question})
    return messages


def _one_line(text: str) -> str:
    """Newlines would let a question end the few-shot frame; fold all whitespace to spaces."""
    return " ".join(text.split())


def few_shot_prompt(request: WorkRequest, preamble: str = DEFAULT_PREAMBLE) -> str:
    """A raw completion prompt for a base model; answer with stop sequence ``"\\n"``."""
    lines = [_one_line(request.system) if request.system else _one_line(preamble), ""]
    for question, answer in FEW_SHOT_EXAMPLES:
        lines += [f"Q: {question}", f"A: {answer}", ""]
    pending_question: str | None = None
    for turn in request.history:
        if turn.role == "user":
            pending_question = _one_line(turn.text)
        elif pending_question is not None:
            lines += [f"Q: {pending_question}", f"A: {_one_line(turn.text)}", ""]
            pending_question = None
    lines += [f"Q: {_one_line(request.question)}", "A:"]
    return "\n".join(lines)


_WORDS = re.compile(r"\w+")


def _normalized(text: str) -> str:
    return " ".join(_WORDS.findall(text.lower()))


def check_answer_text(text: str, question: str) -> tuple[str, str | None]:
    """Trim ``text``; return ``(trimmed, None)`` when usable, else ``(trimmed, reason)`` with
    reason ``"empty"`` (nothing but whitespace or punctuation) or ``"echo"`` (the question
    repeated back, or the answer frame ``Q:`` restarted)."""
    trimmed = text.strip()
    normalized = _normalized(trimmed)
    if not normalized:
        return trimmed, "empty"
    if normalized == _normalized(question) or trimmed.startswith("Q:"):
        return trimmed, "echo"
    return trimmed, None


def unusable_answer(reason: str, attempts: int = 1) -> WorkFailure:
    """The ``MALFORMED`` failure for a reason given by :func:`check_answer_text`."""
    message = "the answer is empty" if reason == "empty" else "the answer echoes the question"
    return WorkFailure(FailureKind.MALFORMED, reason, message, attempts=attempts)
