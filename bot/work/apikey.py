"""API keys for HTTP backends: read from an environment variable or a file that only its owner
can read (mode 0600 or stricter), and held in a :class:`Secret` whose ``repr`` and ``str``
never show the value, so it cannot leak into logs or exception messages by accident.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bot.work.errors import ApiKeyError


class Secret:
    """A string that does not print itself. ``reveal()`` returns the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def read_key_file(path: Path) -> Secret:
    """The key in ``path`` (surrounding whitespace removed). The file must be a regular file
    not readable or writable by group or others."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ApiKeyError(f"API key file {path} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ApiKeyError(f"API key file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise ApiKeyError(
            f"API key file {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise ApiKeyError(f"API key file {path} cannot be read as UTF-8 text") from None
    if not value:
        raise ApiKeyError(f"API key file {path} is empty")
    return Secret(value)


def read_key_env(name: str) -> Secret:
    """The key in environment variable ``name``."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise ApiKeyError(f"environment variable {name} is not set or empty")
    return Secret(value)


def load_api_key(env_var: str | None, file: Path | None) -> Secret | None:
    """The key from ``file`` if given, else from ``env_var`` if given, else ``None`` (servers
    such as Ollama or llama.cpp need none)."""
    if file is not None:
        return read_key_file(file)
    if env_var is not None:
        return read_key_env(env_var)
    return None
