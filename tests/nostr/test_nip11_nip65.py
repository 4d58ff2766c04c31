"""NIP-11 documents (parsed, and fetched from a real relay) and NIP-65 / NIP-17 relay lists."""

import httpx
import pytest

from bot.nostr import nip11, nip65
from bot.nostr.errors import RelayInfoError, RelayListError
from bot.nostr.event import sign_event
from bot.nostr.keys import Keys


def test_parse_limitation_fields() -> None:
    info = nip11.parse_relay_info({
        "name": "r", "supported_nips": [1, 11, 42, "x"],
        "limitation": {"max_message_length": 16384, "max_subscriptions": 20,
                       "auth_required": True, "max_limit": "lots", "min_pow_difficulty": -1},
    })
    assert info.name == "r" and info.supported_nips == (1, 11, 42) and info.supports(42)
    assert info.limitation.max_message_length == 16384
    assert info.limitation.max_subscriptions == 20
    assert info.limitation.auth_required is True
    assert info.limitation.max_limit is None and info.limitation.min_pow_difficulty is None


@pytest.mark.parametrize("bad", [None, [], "x", 3])
def test_non_object_document_is_refused(bad: object) -> None:
    with pytest.raises(RelayInfoError):
        nip11.parse_relay_info(bad)


async def test_fetch_from_real_relay(relay_url: str) -> None:
    async with httpx.AsyncClient() as client:
        info = await nip11.fetch_relay_info(client, relay_url)
    assert info.supports(1)
    assert info.limitation.max_message_length is None  # nostr-relay sends no limitation


async def test_fetch_errors_are_typed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/html":
            return httpx.Response(200, text="<html>")
        return httpx.Response(404)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(RelayInfoError):
            await nip11.fetch_relay_info(client, "wss://relay.test/html")
        with pytest.raises(RelayInfoError):
            await nip11.fetch_relay_info(client, "wss://relay.test/missing")
        with pytest.raises(RelayInfoError):
            await nip11.fetch_relay_info(client, "https://relay.test")
    async with httpx.AsyncClient() as client:
        with pytest.raises(RelayInfoError):
            await nip11.fetch_relay_info(client, "ws://127.0.0.1:1", timeout_s=2)


def test_relay_list_round_trip() -> None:
    keys = Keys.generate()
    entries = [nip65.RelayListEntry("wss://a.example", True, True),
               nip65.RelayListEntry("wss://b.example", True, False),
               nip65.RelayListEntry("wss://c.example", False, True)]
    event = nip65.relay_list_event(keys, entries)
    assert event.kind == 10002
    assert [list(t) for t in event.tags] == [
        ["r", "wss://a.example"], ["r", "wss://b.example", "read"],
        ["r", "wss://c.example", "write"]]
    assert nip65.parse_relay_list(event) == entries


def test_relay_list_skips_bad_tags() -> None:
    keys = Keys.generate()
    event = sign_event(keys, 10002, "", [["r", "https://x"], ["r", "wss://ok"],
                                         ["r", "wss://m", "sometimes"], ["r"], ["p", "wss://p"]])
    assert nip65.parse_relay_list(event) == [nip65.RelayListEntry("wss://ok")]
    with pytest.raises(RelayListError):
        nip65.parse_relay_list(sign_event(keys, 1, ""))
    with pytest.raises(RelayListError):
        nip65.relay_list_event(keys, [nip65.RelayListEntry("http://no")])


def test_dm_relay_list() -> None:
    keys = Keys.generate()
    event = nip65.dm_relay_list_event(keys, ["wss://inbox.example", "ws://127.0.0.1:7000"])
    assert event.kind == 10050
    assert nip65.parse_dm_relays(event) == ["wss://inbox.example", "ws://127.0.0.1:7000"]
    odd = sign_event(keys, 10050, "", [["relay", "wss://a"], ["relay", "wss://a"],
                                       ["relay", "ftp://b"]])
    assert nip65.parse_dm_relays(odd) == ["wss://a"]
    with pytest.raises(RelayListError):
        nip65.dm_relay_list_event(keys, ["nope"])
    with pytest.raises(RelayListError):
        nip65.parse_dm_relays(sign_event(keys, 10002, ""))


@pytest.mark.parametrize(
    ("url", "ok"),
    [("wss://relay.example", True), ("ws://127.0.0.1:7000/x", True), ("wss://[", False),
     ("wss://[]", False), ("https://relay.example", False), ("wss://", False),
     ("wss://relay.\udfffexample", False)],  # a lone surrogate: no socket can be opened to it
)
def test_is_relay_url(url: str, ok: bool) -> None:
    assert nip65.is_relay_url(url) is ok


@pytest.mark.parametrize(
    ("url", "key"),
    [("wss://relay.example", "wss://relay.example"), ("wss://Relay.Example/", "wss://relay.example"),
     ("WS://127.0.0.1:7000/x/", "ws://127.0.0.1:7000/x"), ("wss://[", "wss://[")],
)
def test_relay_key_is_one_form_per_relay(url: str, key: str) -> None:
    assert nip65.relay_key(url) == key
