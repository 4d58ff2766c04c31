"""Secrets (the agent's key, wallet credentials, API keys): read from an environment variable or
from a file only its owner can read (mode 0600 or stricter), and held in a :class:`Secret` whose
``repr`` and ``str`` never show the value, so it cannot reach a log or an exception by accident.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path


class SecretError(ValueError):
    """A secret could not be read; the message names where it was looked for, never its value."""


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


def read_secret_file(path: Path, label: str = "secret") -> Secret:
    """The text in ``path`` (surrounding whitespace removed). The file must be a regular file
    not readable or writable by group or others."""
    try:
        info = path.stat()
    except OSError as exc:
        raise SecretError(f"{label} file {path} cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretError(f"{label} file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise SecretError(
            f"{label} file {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise SecretError(f"{label} file {path} cannot be read as UTF-8 text") from None
    if not value:
        raise SecretError(f"{label} file {path} is empty")
    return Secret(value)


def read_secret_env(
    name: str, label: str = "secret", environ: Mapping[str, str] | None = None
) -> Secret:
    """The text in environment variable ``name``."""
    env = os.environ if environ is None else environ
    value = env.get(name, "").strip()
    if not value:
        raise SecretError(f"environment variable {name} ({label}) is not set or empty")
    return Secret(value)


def write_secret_file(path: Path, value: str) -> None:
    """Create ``path`` with mode 0600 holding ``value``; never overwrites an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")
