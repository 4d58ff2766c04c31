"""A scripted relay on a real websocket, for answers nostr-relay never gives.

nostr-relay never answers ``rate-limited:`` or ``auth-required:`` and never sends ``CLOSED``.
This small server speaks the relay side of NIP-01/NIP-42 over real sockets and follows a
script: ``rate_limit_first`` refuses the first EVENT with ``rate-limited:``,
``require_auth`` answers ``auth-required:`` (OK and CLOSED) until a valid AUTH arrives,
``garbage_first`` sends malformed frames and a NOTICE before anything else, ``frames_first``
sends the given raw frames before anything else, ``silent`` never answers an EVENT (a relay
too slow to say OK; ``sessions`` counts the connections open). It stores events
in memory and serves them to REQs. It checks AUTH events with the project's own NIP-42 check.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from bot.nostr.errors import InvalidEvent
from bot.nostr.event import Event
from bot.nostr.nip42 import check_auth_event


@dataclass
class Script:
    rate_limit_first: bool = False
    require_auth: bool = False
    garbage_first: bool = False
    frames_first: list[str] = field(default_factory=list)
    silent: bool = False
    sessions: int = 0
    events: list[Event] = field(default_factory=list)
    authed: list[str] = field(default_factory=list)
    rate_limited: int = 0
    closed_sent: int = 0
    url: str = ""


async def _session(ws: ServerConnection, script: Script) -> None:
    challenge = secrets.token_hex(8)
    authed: str | None = None
    if script.garbage_first:
        for frame in ("not json", '["WHAT"]', '["EVENT","x",{"id":1}]', '["NOTICE","hello"]'):
            await ws.send(frame)
    for frame in script.frames_first:
        await ws.send(frame)
    if script.require_auth:
        await ws.send(json.dumps(["AUTH", challenge]))
    async for raw in ws:
        msg: list[Any] = json.loads(raw)
        if msg[0] == "AUTH":
            event = Event.from_dict(msg[1])
            ok = check_auth_event(event, script.url, challenge)
            if ok:
                authed = event.pubkey
                script.authed.append(event.pubkey)
            await ws.send(json.dumps(["OK", event.id, ok, "" if ok else "invalid: bad auth"]))
        elif msg[0] == "EVENT":
            try:
                event = Event.from_dict(msg[1])
            except InvalidEvent as exc:
                await ws.send(json.dumps(["OK", msg[1].get("id", ""), False, f"invalid: {exc}"]))
                continue
            if script.require_auth and authed is None:
                await ws.send(json.dumps(["OK", event.id, False, "auth-required: sign in"]))
            elif script.silent:
                script.events.append(event)
            elif script.rate_limit_first and script.rate_limited == 0:
                script.rate_limited += 1
                await ws.send(json.dumps(["OK", event.id, False, "rate-limited: slow down"]))
            else:
                script.events.append(event)
                await ws.send(json.dumps(["OK", event.id, True, ""]))
        elif msg[0] == "REQ":
            sub_id = msg[1]
            if script.require_auth and authed is None:
                script.closed_sent += 1
                await ws.send(json.dumps(["CLOSED", sub_id, "auth-required: sign in to read"]))
                continue
            for event in script.events:
                await ws.send(json.dumps(["EVENT", sub_id, event.to_dict()]))
            await ws.send(json.dumps(["EOSE", sub_id]))


@asynccontextmanager
async def scripted_relay(script: Script) -> AsyncIterator[Script]:
    async def handler(ws: ServerConnection) -> None:
        script.sessions += 1
        try:
            await _session(ws, script)
        finally:
            script.sessions -= 1

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        script.url = f"ws://127.0.0.1:{port}"
        yield script
