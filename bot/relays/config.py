"""``relays.toml``: the relays the agent reads from and writes to.

    [[relay]]
    url = "wss://relay.example"
    read = true     # subscribe here (default true)
    write = true    # publish here (default true)

Every failure is a :class:`RelayConfigError` (a :class:`bot.config.ConfigError`) naming the file
and the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.config import ConfigError, load_toml
from bot.nostr.nip65 import is_relay_url


class RelayConfigError(ConfigError):
    """``relays.toml`` is missing, unreadable, or has a bad entry."""


@dataclass(frozen=True, slots=True)
class RelayConfig:
    url: str
    read: bool = True
    write: bool = True


def parse_relays_toml(text: str, source: str = "relays.toml") -> list[RelayConfig]:
    """The relays listed in ``text``; ``source`` names the file in messages."""
    try:
        data = load_toml(text, source)
    except ConfigError as exc:
        raise RelayConfigError(str(exc)) from None
    entries = data.get("relay", [])
    if not isinstance(entries, list):
        raise RelayConfigError(f"{source}: [[relay]] must be an array of tables")
    out: list[RelayConfig] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise RelayConfigError(f"{source}: relay #{i + 1} is not a table")
        unknown = set(entry) - {"url", "read", "write"}
        if unknown:
            raise RelayConfigError(f"{source}: relay #{i + 1} has unknown keys {sorted(unknown)}")
        url = entry.get("url")
        if not isinstance(url, str) or not is_relay_url(url):
            raise RelayConfigError(f"{source}: relay #{i + 1} url needs a ws:// or wss:// url")
        read, write = entry.get("read", True), entry.get("write", True)
        if not isinstance(read, bool) or not isinstance(write, bool):
            raise RelayConfigError(f"{source}: {url}: read and write must be true or false")
        if url in seen:
            raise RelayConfigError(f"{source}: {url} is listed twice")
        seen.add(url)
        out.append(RelayConfig(url=url, read=read, write=write))
    if not out:
        raise RelayConfigError(f"{source} lists no relay")
    if not any(r.read for r in out) or not any(r.write for r in out):
        raise RelayConfigError(f"{source} needs at least one read and one write relay")
    return out


def load_relays_toml(path: str | Path) -> list[RelayConfig]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RelayConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RelayConfigError(f"{path} is not UTF-8 text") from None
    except ValueError:  # a NUL byte in the path
        raise RelayConfigError(f"cannot read {str(path)!r}: not a usable path") from None
    return parse_relays_toml(text, str(path))
