"""The relay pool: websocket connections to Nostr relays, kept thin over sans-I/O parts.

- ``messages``    relay ↔ client protocol messages, parsed and built without I/O
- ``backoff``     the reconnect delay generator (exponential, jittered, injectable)
- ``config``      ``relays.toml`` loading
- ``status``      per-relay status snapshots
- ``dedupe``      the store protocol (claim / cursor / set_cursor) and an in-memory store
- ``connection``  one relay: connect, AUTH, subscriptions, OKs, reconnect
- ``pool``        ``RelayPool``: many relays, dedupe, cursors, publishing
- ``inbox``       DMs (NIP-04 and NIP-17) in, replies in the asker's protocol out
"""

from bot.relays.config import RelayConfig, RelayConfigError, load_relays_toml, parse_relays_toml
from bot.relays.dedupe import MemoryStore, SeenStore
from bot.relays.pool import PublishResult, RelayPool, Subscription
from bot.relays.status import RelayState, RelayStatus

__all__ = [
    "MemoryStore",
    "PublishResult",
    "RelayConfig",
    "RelayConfigError",
    "RelayPool",
    "RelayState",
    "RelayStatus",
    "SeenStore",
    "Subscription",
    "load_relays_toml",
    "parse_relays_toml",
]
