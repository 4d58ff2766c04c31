"""The sans-I/O parts: relay message parsing and building, backoff, relays.toml, dedupe."""

import contextlib
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import ConfigError
from bot.nostr.errors import InvalidEvent, NostrError
from bot.nostr.event import sign_event
from bot.nostr.keys import Keys
from bot.relays import MemoryStore, RelayConfig, RelayConfigError, RelayPool
from bot.relays.backoff import BackoffPolicy, backoff_delays
from bot.relays.config import load_relays_toml, parse_relays_toml
from bot.relays.dedupe import RecentIds
from bot.relays.filters import matches, matches_any
from bot.relays.messages import (
    AuthChallenge,
    ClosedMessage,
    EoseMessage,
    EventMessage,
    HeldEventMessage,
    NoticeMessage,
    OkMessage,
    RelayProtocolError,
    close_message,
    event_message,
    ok_prefix,
    parse_relay_message,
    req_message,
)

ROOT = Path(__file__).resolve().parents[2]


def test_parse_each_message_type() -> None:
    event = sign_event(Keys.generate(), 1, "x")
    assert parse_relay_message(json.dumps(["EVENT", "s1", event.to_dict()])) == EventMessage(
        "s1", event)
    ok = parse_relay_message('["OK","' + event.id + '",false,"rate-limited: slow down"]')
    assert ok == OkMessage(event.id, False, "rate-limited: slow down")
    assert isinstance(ok, OkMessage) and ok.prefix == "rate-limited"
    assert parse_relay_message('["EOSE","s1"]') == EoseMessage("s1")
    closed = parse_relay_message('["CLOSED","s1","auth-required: who are you"]')
    assert isinstance(closed, ClosedMessage) and closed.prefix == "auth-required"
    assert parse_relay_message('["NOTICE","hi"]') == NoticeMessage("hi")
    assert parse_relay_message('["AUTH","chal"]') == AuthChallenge("chal")


def test_event_in_frame_is_verified() -> None:
    event = sign_event(Keys.generate(), 1, "x").to_dict() | {"content": "tampered"}
    with pytest.raises(InvalidEvent):
        parse_relay_message(json.dumps(["EVENT", "s", event]))


def test_an_event_the_caller_holds_is_not_read() -> None:
    event = sign_event(Keys.generate(), 1, "x")
    tampered = json.dumps(["EVENT", "s", event.to_dict() | {"content": "tampered"}])
    asked: list[tuple[str, str]] = []

    def held(sub_id: str, event_id: str) -> bool:
        asked.append((sub_id, event_id))
        return sub_id == "s"

    assert parse_relay_message(tampered, held) == HeldEventMessage("s", event.id)
    other = json.dumps(["EVENT", "t", event.to_dict() | {"content": "tampered"}])
    with pytest.raises(InvalidEvent):  # not held for that subscription: verified as ever
        parse_relay_message(other, held)
    assert asked == [("s", event.id), ("t", event.id)]
    no_id = json.dumps(["EVENT", "s", {k: v for k, v in event.to_dict().items() if k != "id"}])
    with pytest.raises(NostrError):  # no id to look up: read (and refused) as ever
        parse_relay_message(no_id, held)


@pytest.mark.parametrize("frame", [
    "", "{}", "[]", "[1]", '["WHAT"]', '["EOSE"]', '["EOSE",5]', '["OK","x"]', '["OK","x","yes"]',
    '["AUTH"]', '["AUTH",""]', '["EVENT","s"]', '["CLOSED"]', "[" * 50_000, "x" * (2 << 20),
])
def test_bad_frames_are_protocol_errors(frame: str) -> None:
    with pytest.raises((RelayProtocolError, InvalidEvent)):
        parse_relay_message(frame)


def test_ok_prefix() -> None:
    assert ok_prefix("duplicate: already have it") == "duplicate"
    assert ok_prefix("auth-required: please") == "auth-required"
    assert ok_prefix("just some words: here") == ""
    assert ok_prefix("") == ""


def test_builders() -> None:
    event = sign_event(Keys.generate(), 1, "é")
    assert json.loads(event_message(event)) == ["EVENT", event.to_dict()]
    assert "é" in event_message(event)
    assert json.loads(req_message("s", [{"kinds": [1]}, {"#p": ["a"]}])) == [
        "REQ", "s", {"kinds": [1]}, {"#p": ["a"]}]
    assert json.loads(close_message("s")) == ["CLOSE", "s"]


def test_backoff_grows_caps_and_jitters() -> None:
    policy = BackoffPolicy(base_s=1, factor=2, cap_s=10, jitter=0.5)
    no_jitter = list(itertools.islice(backoff_delays(policy, lambda: 0.0), 7))
    assert no_jitter == [1, 2, 4, 8, 10, 10, 10]
    full_jitter = list(itertools.islice(backoff_delays(policy, lambda: 1.0), 5))
    assert full_jitter == [0.5, 1, 2, 4, 5]
    values = iter([0.1, 0.9, 0.5])
    mixed = list(itertools.islice(backoff_delays(policy, lambda: next(values)), 3))
    assert mixed == pytest.approx([0.95, 1.1, 3.0])
    with pytest.raises(ValueError):
        BackoffPolicy(base_s=0)
    with pytest.raises(ValueError):
        BackoffPolicy(jitter=2)


def test_repository_relays_toml_loads() -> None:
    relays = load_relays_toml(ROOT / "relays.toml")
    assert relays and all(r.url.startswith("wss://") for r in relays)


def test_relays_toml_flags() -> None:
    text = """
[[relay]]
url = "wss://a.example"
[[relay]]
url = "ws://127.0.0.1:7777"
read = false
[[relay]]
url = "wss://c.example"
write = false
"""
    assert parse_relays_toml(text) == [
        RelayConfig("wss://a.example", True, True),
        RelayConfig("ws://127.0.0.1:7777", False, True),
        RelayConfig("wss://c.example", True, False),
    ]


@pytest.mark.parametrize("text", [
    "not toml [", "", "relay = 5", "[[relay]]\nurl = 'https://x'", "[[relay]]\nread = true",
    "[[relay]]\nurl = 'wss://a'\nread = 'yes'", "[[relay]]\nurl = 'wss://a'\ncolour = 'red'",
    "[[relay]]\nurl = 'wss://a'\n[[relay]]\nurl = 'wss://a'",
    "[[relay]]\nurl = 'wss://a'\nwrite = false",
])
def test_bad_relays_toml(text: str) -> None:
    with pytest.raises(RelayConfigError):
        parse_relays_toml(text)


def test_missing_relays_toml(tmp_path: Path) -> None:
    with pytest.raises(RelayConfigError):
        load_relays_toml(tmp_path / "nope.toml")


@pytest.mark.parametrize(("text", "fragment"), [
    ("[[relay]]\nurl = 'wss://a'\nread = " + "9" * 5000, "more digits"),
    ("[[relay]]\nurl = " + "[" * 1000 + "]" * 1000, "nested too deep"),
    ("[[relay]]\nurl = " + "{a = " * 1000 + "1" + "}" * 1000, "nested too deep"),
])
def test_relays_toml_the_parser_cannot_hold_is_a_config_error(
    tmp_path: Path, text: str, fragment: str
) -> None:
    """Issue 12 item 6: a ConfigError naming the file, never ValueError / RecursionError."""
    path = tmp_path / "relays.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_relays_toml(path)
    assert isinstance(info.value, RelayConfigError)
    assert fragment in str(info.value) and str(path) in str(info.value)
    with pytest.raises(RelayConfigError):
        parse_relays_toml(text)


def test_relays_toml_errors_name_the_file_and_entry(tmp_path: Path) -> None:
    path = tmp_path / "my-relays.toml"
    path.write_text("[[relay]]\nurl = 'https://x'\n", encoding="utf-8")
    with pytest.raises(RelayConfigError) as info:
        load_relays_toml(path)
    assert str(path) in str(info.value) and "relay #1 url" in str(info.value)
    with pytest.raises(RelayConfigError, match="cannot read"):
        load_relays_toml("bad\x00path")


def test_recent_ids_is_bounded() -> None:
    recent = RecentIds(capacity=3)
    assert recent.add("a") and recent.add("b") and recent.add("c")
    assert not recent.add("a")  # refreshes a
    assert recent.add("d")  # evicts b, the oldest
    assert "b" not in recent and "a" in recent and len(recent) == 3


async def test_memory_store_contract() -> None:
    store = MemoryStore()
    assert await store.claim("x") and not await store.claim("x")
    assert await store.cursor("wss://r") is None
    await store.set_cursor("wss://r", 100)
    await store.set_cursor("wss://r", 50)  # never backwards
    assert await store.cursor("wss://r") == 100


async def test_subscription_since_comes_from_cursor_minus_lookback() -> None:
    store = MemoryStore()
    await store.set_cursor("wss://r.example", 1_000_000)
    pool = RelayPool([RelayConfig("wss://r.example")], store=store, clock=lambda: 2_000_000.0)
    sub = await pool.subscribe([{"kinds": [1059]}, {"kinds": [4], "since": 999_999}],
                               _ignore, lookback_s=172_800)
    conn = pool._conns[0]
    filters = await pool._filters_for(conn, sub)
    assert filters == [{"kinds": [1059], "since": 1_000_000 - 172_800},
                       {"kinds": [4], "since": 999_999}]
    fresh = RelayPool([RelayConfig("wss://other.example")], clock=lambda: 2_000_000.0)
    sub2 = await fresh.subscribe([{"kinds": [1]}], _ignore, lookback_s=60)
    assert await fresh._filters_for(fresh._conns[0], sub2) == [{"kinds": [1],
                                                                "since": 2_000_000 - 60}]


class _CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.cursor_reads = 0

    async def cursor(self, relay_url: str) -> int | None:
        self.cursor_reads += 1
        return await super().cursor(relay_url)


async def test_resubscribing_reads_the_cursor_once_per_connection() -> None:
    store = _CountingStore()
    await store.set_cursor("wss://r.example", 1_000_000)
    pool = RelayPool([RelayConfig("wss://r.example")], store=store, clock=lambda: 2_000_000.0)
    for lookback in (60, 120, 180):
        await pool.subscribe([{"kinds": [1]}], _ignore, lookback_s=lookback)
    subs = await pool._subscriptions_for(pool._conns[0])
    assert store.cursor_reads == 1
    assert [f[0]["since"] for _, f in subs] == [1_000_000 - 60, 1_000_000 - 120, 1_000_000 - 180]


async def _ignore(event: object, relay_url: str) -> None:
    return None


def test_filter_matching() -> None:
    keys = Keys.generate()
    event = sign_event(keys, 4, "x", [["p", "aa" * 32], ["e", "bb" * 32]], created_at=1000)
    assert matches({}, event)
    assert matches({"kinds": [4], "authors": [keys.public_hex], "#p": ["aa" * 32]}, event)
    assert matches({"since": 1000, "until": 1000, "ids": [event.id]}, event)
    assert not matches({"kinds": [1]}, event)
    assert not matches({"authors": ["cc" * 32]}, event)
    assert not matches({"#p": ["cc" * 32]}, event)
    assert not matches({"#t": ["x"]}, event)
    assert not matches({"since": 1001}, event)
    assert not matches({"until": 999}, event)
    assert not matches({"ids": ["dd" * 32]}, event)
    assert matches_any([{"kinds": [1]}, {"kinds": [4]}], event)
    assert not matches_any([], event)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(
    st.one_of(st.sampled_from(["EVENT", "OK", "EOSE", "CLOSED", "NOTICE", "AUTH", "COUNT"]),
              st.text(max_size=20), st.integers(), st.booleans(), st.none(),
              st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
    max_size=4).map(json.dumps)))
def test_fuzzed_frames_only_raise_typed_errors(frame: str) -> None:
    with contextlib.suppress(NostrError):
        parse_relay_message(frame)


async def test_publish_on_a_stopped_pool_is_a_clear_refusal() -> None:
    pool = RelayPool([RelayConfig("ws://127.0.0.1:9")])
    result = await pool.publish(sign_event(Keys.generate(), 1, "x"))
    assert not result.ok and "not running" in result.refused["*"]
    read_only = RelayPool([RelayConfig("ws://127.0.0.1:9", write=False)])
    await read_only.start()
    try:
        result = await read_only.publish(sign_event(Keys.generate(), 1, "x"))
        assert not result.ok and "no write relay" in result.refused["*"]
    finally:
        await read_only.stop()
