"""Configuration and request validation: bad values are refused with a clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.work.config import LocalModelConfig, OpenAIConfig
from bot.work.errors import InvalidWorkRequest, WorkConfigError
from bot.work.result import Turn, WorkRequest


@pytest.mark.parametrize(
    "overrides",
    [
        {"base_url": "ftp://example.org/v1"},
        {"base_url": "not a url"},
        {"base_url": "https://user:secret@example.org/v1"},
        {"model": ""},
        {"max_tokens": 0},
        {"max_tokens": True},
        {"max_tokens_field": "max_new_tokens"},
        {"headers": {"Authorization": "Bearer x"}},
        {"max_attempts": 0},
        {"read_timeout_s": 0},
        {"connect_timeout_s": float("nan")},
        {"temperature": 3.0},
        {"models": "gpt-4o"},
        {"models": [""]},
        {"models": ["a\nb"]},
        {"models": ["m" * 129]},
    ],
)
def test_bad_endpoint_config(overrides: dict[str, Any]) -> None:
    values: dict[str, Any] = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}
    values.update(overrides)
    with pytest.raises(WorkConfigError) as info:
        OpenAIConfig(**values)
    assert "secret" not in str(info.value)


def test_models_offered_are_the_model_then_the_others_once() -> None:
    config = OpenAIConfig("http://h/v1", "m", models=["x", "m", "x", "y"])  # type: ignore[arg-type]
    assert config.models == ("x", "y")


def test_server_root_strips_v1() -> None:
    assert OpenAIConfig("http://h:8080/v1/", "m").server_root == "http://h:8080"
    assert OpenAIConfig("https://h/api", "m").server_root == "https://h/api"


@pytest.mark.parametrize(
    "overrides",
    [{"n_ctx": 0}, {"max_tokens": 4096, "n_ctx": 2048}, {"threads": 0}, {"temperature": -1}],
)
def test_bad_local_config(overrides: dict[str, Any]) -> None:
    with pytest.raises(WorkConfigError):
        LocalModelConfig(**overrides)


def test_local_config_defaults() -> None:
    config = LocalModelConfig()
    assert config.model_path is None
    assert LocalModelConfig(model_path=Path("/x.gguf")).model_path == Path("/x.gguf")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"question": ""},
        {"question": "   "},
        {"question": "x" * 40_000},
        {"max_tokens": 0},
        {"max_tokens": 1.5},
        {"timeout_s": 0},
        {"timeout_s": float("inf")},
        {"system": 5},
        {"history": [Turn("user", "a")]},
        {"temperature": 2.5},
        {"temperature": -0.1},
        {"temperature": float("nan")},
        {"temperature": True},
        {"temperature": "1"},
        {"model": ""},
        {"model": "a\x00b"},
        {"model": "m" * 200},
    ],
)
def test_bad_requests(kwargs: dict[str, Any]) -> None:
    values: dict[str, Any] = {"question": "q", "max_tokens": 5, "timeout_s": 1.0}
    values.update(kwargs)
    with pytest.raises(InvalidWorkRequest):
        WorkRequest(**values)


def test_bad_history_role() -> None:
    with pytest.raises(InvalidWorkRequest):
        Turn("system", "x")  # type: ignore[arg-type]
