"""Choosing the backend from configuration: an OpenAI-compatible endpoint when one is
configured, else the embedded local model (which raises
:class:`~bot.work.errors.LocalModelUnavailable`, saying how to install the ``local`` extra or
configure an endpoint, when it is not installed)."""

from __future__ import annotations

import httpx

from bot.work.backend import Backend
from bot.work.config import LocalModelConfig, OpenAIConfig


def make_backend(
    endpoint: OpenAIConfig | None,
    local: LocalModelConfig | None = None,
    client: httpx.AsyncClient | None = None,
) -> Backend:
    """The backend for this configuration (``client`` is used by the HTTP backend only)."""
    if endpoint is not None:
        from bot.work.openai_compat import OpenAIBackend

        return OpenAIBackend(endpoint, client)
    from bot.work.local import LocalBackend

    return LocalBackend(local)
