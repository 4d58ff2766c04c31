"""The relay fixtures themselves: a real relay answers NIP-11, stores events across restarts,
and with auth on refuses unauthenticated writes and accepts authenticated ones."""

import json

import httpx
import websockets

from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from bot.nostr.nip42 import auth_event
from tests.fixtures.relay import RelayFactory


async def _publish(url: str, event: Event) -> list[object]:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps(["EVENT", event.to_dict()]))
        reply: list[object] = json.loads(await ws.recv())
        return reply


async def _fetch(url: str, author: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps(["REQ", "s", {"authors": [author]}]))
        while True:
            msg = json.loads(await ws.recv())
            if msg[0] == "EOSE":
                return out
            if msg[0] == "EVENT":
                out.append(msg[2])


async def test_shared_relay_answers_nip11_and_stores(relay_url: str) -> None:
    http = relay_url.replace("ws://", "http://")
    async with httpx.AsyncClient() as client:
        doc = (await client.get(http, headers={"Accept": "application/nostr+json"})).json()
    assert isinstance(doc, dict) and "supported_nips" in doc
    keys = Keys.generate()
    event = sign_event(keys, 1, "stored?")
    assert await _publish(relay_url, event) == ["OK", event.id, True, ""]
    assert await _fetch(relay_url, keys.public_hex) == [event.to_dict()]


async def test_kill_and_restart_keeps_url_and_events(relay_factory: RelayFactory) -> None:
    relay = relay_factory()
    keys = Keys.generate()
    event = sign_event(keys, 1, "survives a crash")
    assert (await _publish(relay.url, event))[2] is True
    url, pid = relay.url, relay.pid
    relay.kill()
    assert not relay.running
    relay.start()
    assert relay.url == url and relay.pid != pid
    assert await _fetch(relay.url, keys.public_hex) == [event.to_dict()]


async def test_auth_relay_requires_auth_to_write(relay_factory: RelayFactory) -> None:
    writer, stranger = Keys.generate(), Keys.generate()
    relay = relay_factory(auth=True, writers=[writer.public_hex])
    for keys, allowed in ((writer, True), (stranger, False)):
        async with websockets.connect(relay.url) as ws:
            challenge = json.loads(await ws.recv())
            assert challenge[0] == "AUTH"
            before = sign_event(keys, 1, "before auth")
            await ws.send(json.dumps(["EVENT", before.to_dict()]))
            refused = json.loads(await ws.recv())
            assert refused[2] is False and str(refused[3]).startswith("restricted")
            await ws.send(json.dumps(["AUTH", auth_event(keys, relay.url, challenge[1]).to_dict()]))
            after = sign_event(keys, 1, "after auth")
            await ws.send(json.dumps(["EVENT", after.to_dict()]))
            answer = json.loads(await ws.recv())
            assert answer[0] == "OK" and answer[2] is allowed
            # this relay names the event in accepted OKs only; refusals carry an empty id
            assert answer[1] == (after.id if allowed else "")
