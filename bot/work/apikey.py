"""API keys for HTTP backends: read from an environment variable or a file that only its owner
can read (mode 0600 or stricter) through :mod:`bot.secrets`, and held in a :class:`Secret`
whose ``repr`` and ``str`` never show the value.
"""

from __future__ import annotations

from pathlib import Path

from bot.secrets import Secret, SecretError, read_secret_env, read_secret_file
from bot.work.errors import ApiKeyError

__all__ = ["Secret", "load_api_key", "read_key_env", "read_key_file"]


def read_key_file(path: Path) -> Secret:
    """The key in ``path`` (surrounding whitespace removed). The file must be a regular file
    not readable or writable by group or others."""
    try:
        return read_secret_file(path, "API key")
    except SecretError as exc:
        raise ApiKeyError(str(exc)) from None


def read_key_env(name: str) -> Secret:
    """The key in environment variable ``name``."""
    try:
        return read_secret_env(name, "API key")
    except SecretError as exc:
        raise ApiKeyError(str(exc)) from None


def load_api_key(env_var: str | None, file: Path | None) -> Secret | None:
    """The key from ``file`` if given, else from ``env_var`` if given, else ``None`` (servers
    such as Ollama or llama.cpp need none)."""
    if file is not None:
        return read_key_file(file)
    if env_var is not None:
        return read_key_env(env_var)
    return None
