"""A small TOML writer for the configurations the end-to-end harness writes.

Only what ``timmy.toml`` and ``relays.toml`` need: tables (nested by dotted names), arrays of
tables, strings, integers, booleans, floats, lists of scalars and inline tables of strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string is a JSON string
    if isinstance(value, Mapping):
        inner = ", ".join(f"{json.dumps(str(k))} = {_scalar(v)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


class Inline(dict[str, str]):
    """A mapping written as an inline table (``headers = {"X-Scenario" = "s1"}``)."""


def _is_table(value: object) -> bool:
    return isinstance(value, Mapping) and not isinstance(value, Inline)


def dumps(document: Mapping[str, Any]) -> str:
    """``document``: top-level keys are tables, or lists of tables (``[[relay]]``)."""
    lines: list[str] = []

    def table(name: str, body: Mapping[str, Any]) -> None:
        plain = {k: v for k, v in body.items() if not _is_table(v)}
        nested = {k: v for k, v in body.items() if _is_table(v)}
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_scalar(v)}" for k, v in plain.items())
        lines.append("")
        for key, sub in nested.items():
            table(f"{name}.{key}", sub)

    for name, body in document.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{name}]]")
                lines.extend(f"{k} = {_scalar(v)}" for k, v in item.items())
                lines.append("")
        else:
            table(name, body)
    return "\n".join(lines)
