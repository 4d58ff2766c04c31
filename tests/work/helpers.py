"""Shared builders for the bot.work tests."""

from __future__ import annotations

from typing import Any

from bot.work.config import OpenAIConfig
from bot.work.result import WorkRequest
from tests.fixtures.ai_server import Scenario


def config_for(scenario: Scenario, **overrides: Any) -> OpenAIConfig:
    """A config pointing at the test server, in this scenario, with quick retries."""
    values: dict[str, Any] = {
        "base_url": scenario.server.url,
        "model": "test-model",
        "headers": scenario.headers,
        "backoff_s": 0.01,
        "connect_timeout_s": 2.0,
        "read_timeout_s": 5.0,
    }
    values.update(overrides)
    return OpenAIConfig(**values)


def ask(question: str = "Why is the sky blue?", max_tokens: int = 32, **kw: Any) -> WorkRequest:
    kw.setdefault("timeout_s", 10.0)
    return WorkRequest(question=question, max_tokens=max_tokens, **kw)
