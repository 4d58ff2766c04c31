"""Per-relay status: what an operator (or the ``status`` command) sees about each relay."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RelayState(enum.Enum):
    IDLE = "idle"                # not started
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKING_OFF = "backing off"  # waiting before the next reconnect attempt
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class RelayStatus:
    url: str
    read: bool
    write: bool
    state: RelayState
    authenticated: bool
    auth_failed: bool
    last_error: str | None
    events_in: int          # events received: verified, or held already (dropped unread)
    events_out: int         # events the relay accepted from us
    invalid_in: int         # frames or events rejected by our checks
    last_invalid: str | None  # why the last of them was rejected
    internal_errors: int    # frames whose handling hit a bug of ours (logged with a traceback)
    connects: int           # successful connections so far
    retry_in_s: float | None  # when backing off: seconds until the next attempt
    max_message_length: int | None  # from NIP-11, when the relay publishes it
