"""``relays.toml``: the relays the agent reads from and writes to.

    [[relay]]
    url = "wss://relay.example"
    read = true     # subscribe here (default true)
    write = true    # publish here (default true)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from bot.nostr.nip65 import is_relay_url


class RelayConfigError(ValueError):
    """``relays.toml`` is missing, unreadable, or has a bad entry."""


@dataclass(frozen=True, slots=True)
class RelayConfig:
    url: str
    read: bool = True
    write: bool = True


def parse_relays_toml(text: str) -> list[RelayConfig]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RelayConfigError(f"relays.toml is not valid TOML: {exc}") from exc
    entries = data.get("relay", [])
    if not isinstance(entries, list):
        raise RelayConfigError("relays.toml: [[relay]] must be an array of tables")
    out: list[RelayConfig] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise RelayConfigError(f"relays.toml: relay #{i + 1} is not a table")
        unknown = set(entry) - {"url", "read", "write"}
        if unknown:
            raise RelayConfigError(
                f"relays.toml: relay #{i + 1} has unknown keys {sorted(unknown)}")
        url = entry.get("url")
        if not isinstance(url, str) or not is_relay_url(url):
            raise RelayConfigError(f"relays.toml: relay #{i + 1} needs a ws:// or wss:// url")
        read, write = entry.get("read", True), entry.get("write", True)
        if not isinstance(read, bool) or not isinstance(write, bool):
            raise RelayConfigError(f"relays.toml: {url}: read and write must be true or false")
        if url in seen:
            raise RelayConfigError(f"relays.toml: {url} is listed twice")
        seen.add(url)
        out.append(RelayConfig(url=url, read=read, write=write))
    if not out:
        raise RelayConfigError("relays.toml lists no relay")
    if not any(r.read for r in out) or not any(r.write for r in out):
        raise RelayConfigError("relays.toml needs at least one read and one write relay")
    return out


def load_relays_toml(path: str | Path) -> list[RelayConfig]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RelayConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_relays_toml(text)
