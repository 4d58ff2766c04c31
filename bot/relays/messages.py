"""Nostr relay protocol messages (NIP-01, NIP-42, NIP-45 ignored), with no I/O.

``parse_relay_message`` turns one websocket text frame from a relay into a typed message or
raises ``RelayProtocolError``; an ``EVENT`` message carries a fully verified ``Event`` (id
recomputed, signature checked) or raises the event's ``InvalidEvent`` — unless the caller
already holds an event of that id for that subscription (``held``): then it is a
``HeldEventMessage`` that carries the id alone, the rest neither parsed nor verified. The
``*_message`` builders produce client frames.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bot.nostr.errors import NostrError
from bot.nostr.event import Event
from bot.nostr.nip42 import is_valid_challenge
from bot.untrusted import load_json

MAX_FRAME_CHARS: Final = 1 << 20
MAX_SUB_ID_CHARS: Final = 64

Filter = Mapping[str, Any]


class RelayProtocolError(NostrError):
    """A frame from a relay that is not a well-formed relay message."""


@dataclass(frozen=True, slots=True)
class EventMessage:
    sub_id: str
    event: Event


@dataclass(frozen=True, slots=True)
class HeldEventMessage:
    """An ``EVENT`` whose id the caller holds for that subscription: nothing else was read."""

    sub_id: str
    event_id: str


IsHeld = Callable[[str, str], bool]
"""``held(sub_id, event_id)``: whether the caller already holds that event for that
subscription (delivered before, or made by the caller itself)."""


@dataclass(frozen=True, slots=True)
class OkMessage:
    event_id: str
    accepted: bool
    message: str

    @property
    def prefix(self) -> str:
        return ok_prefix(self.message)


@dataclass(frozen=True, slots=True)
class EoseMessage:
    sub_id: str


@dataclass(frozen=True, slots=True)
class ClosedMessage:
    sub_id: str
    message: str

    @property
    def prefix(self) -> str:
        return ok_prefix(self.message)


@dataclass(frozen=True, slots=True)
class NoticeMessage:
    message: str


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    challenge: str


@dataclass(frozen=True, slots=True)
class CountMessage:
    sub_id: str


RelayMessage = (EventMessage | HeldEventMessage | OkMessage | EoseMessage | ClosedMessage
                | NoticeMessage | AuthChallenge | CountMessage)


def ok_prefix(message: str) -> str:
    """The machine-readable prefix of an OK/CLOSED message: ``"rate-limited"`` etc., or ``""``."""
    head, sep, _ = message.partition(":")
    if not sep or " " in head or len(head) > 32:
        return ""
    return head


def _str(value: object, what: str, limit: int = MAX_FRAME_CHARS) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise RelayProtocolError(f"{what} must be a string")
    return value


def parse_relay_message(frame: str | bytes, held: IsHeld | None = None) -> RelayMessage:
    data = load_json(frame, max_chars=MAX_FRAME_CHARS, error=RelayProtocolError, what="frame")
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise RelayProtocolError("frame must be a JSON array starting with a string")
    kind, args = data[0], data[1:]
    if kind == "EVENT":
        if len(args) != 2:
            raise RelayProtocolError("EVENT takes a subscription id and an event")
        sub_id = _str(args[0], "subscription id", MAX_SUB_ID_CHARS)
        event_id = args[1].get("id") if isinstance(args[1], dict) else None
        if held is not None and isinstance(event_id, str) and held(sub_id, event_id):
            return HeldEventMessage(sub_id, event_id)
        return EventMessage(sub_id, Event.from_dict(args[1]))
    if kind == "OK":
        if len(args) < 2 or not isinstance(args[1], bool):
            raise RelayProtocolError("OK takes an event id, a boolean and a message")
        message = _str(args[2], "OK message") if len(args) > 2 else ""
        return OkMessage(_str(args[0], "event id", 64), args[1], message)
    if kind == "EOSE":
        if len(args) != 1:
            raise RelayProtocolError("EOSE takes a subscription id")
        return EoseMessage(_str(args[0], "subscription id", MAX_SUB_ID_CHARS))
    if kind == "CLOSED":
        if len(args) < 1:
            raise RelayProtocolError("CLOSED takes a subscription id")
        message = _str(args[1], "CLOSED message") if len(args) > 1 else ""
        return ClosedMessage(_str(args[0], "subscription id", MAX_SUB_ID_CHARS), message)
    if kind == "NOTICE":
        return NoticeMessage(_str(args[0], "notice") if args else "")
    if kind == "AUTH":
        if len(args) != 1:
            raise RelayProtocolError("AUTH takes a challenge")
        if not is_valid_challenge(args[0]):
            raise RelayProtocolError("malformed AUTH challenge")
        return AuthChallenge(args[0])
    if kind == "COUNT":
        return CountMessage(_str(args[0], "subscription id", MAX_SUB_ID_CHARS) if args else "")
    raise RelayProtocolError(f"unknown relay message type {kind[:16]!r}")


def _dumps(data: Sequence[Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def event_message(event: Event) -> str:
    return _dumps(["EVENT", event.to_dict()])


def auth_message(event: Event) -> str:
    return _dumps(["AUTH", event.to_dict()])


def req_message(sub_id: str, filters: Sequence[Filter]) -> str:
    return _dumps(["REQ", sub_id, *[dict(f) for f in filters]])


def close_message(sub_id: str) -> str:
    return _dumps(["CLOSE", sub_id])
