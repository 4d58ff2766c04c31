"""Hostile relay frames over real sockets (issue 12, findings 1 and 7), and the one guard of the
connection's frame handler: whatever a relay sends, the link stays up and nothing escapes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.logs import SafeFormatter
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from bot.relays import RelayPool
from bot.relays.config import RelayConfig
from bot.relays.connection import RelayConnection
from bot.relays.messages import Filter, RelayProtocolError, parse_relay_message
from tests.relays.conftest import FAST_BACKOFF
from tests.relays.helpers import Collector, configs, wait_until
from tests.relays.scripted_relay import Script, scripted_relay

# The campaign's input for finding 1, as the relay sent it: JSON text whose challenge is the
# escape of a lone surrogate (a websocket text frame cannot carry the raw code point).
AUTH_LONE_SURROGATE = '["AUTH","\\udfff"]'
# Finding 7: peer text with lone surrogates, and a line break that would forge a log line.
NOTICE_LONE_SURROGATE = '["NOTICE","bad \\ud800 notice"]'
CLOSED_LONE_SURROGATE = '["CLOSED","timmy1","\\udfff closed"]'
NOTICE_FORGED_LINE = json.dumps(["NOTICE", "hello\nERROR bot.ledger: forged line\x1b[2J"])


class StrictUtf8Handler(logging.Handler):
    """What a log file or JSON-log handler does: encode every record as strict UTF-8."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.buffer = io.BytesIO()
        self.stream = io.TextIOWrapper(self.buffer, encoding="utf-8", errors="strict",
                                       write_through=True)
        self.failures: list[BaseException] = []
        self.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + "\n")
        except Exception as exc:  # what logging would print and swallow
            self.failures.append(exc)

    def lines(self) -> list[str]:
        return self.buffer.getvalue().decode("utf-8").splitlines()


@pytest.fixture
def strict_log() -> Iterator[StrictUtf8Handler]:
    handler = StrictUtf8Handler()
    logger = logging.getLogger("bot")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_a_lone_surrogate_challenge_is_a_protocol_error() -> None:
    with pytest.raises(RelayProtocolError, match="surrogate"):
        parse_relay_message(AUTH_LONE_SURROGATE)
    with pytest.raises(RelayProtocolError, match="AUTH challenge"):
        parse_relay_message(json.dumps(["AUTH", "x" * 513]))
    with pytest.raises(RelayProtocolError, match="AUTH challenge"):
        parse_relay_message('["AUTH",""]')


async def test_finding_1_a_malformed_auth_challenge_is_refused_and_the_link_stays(
        strict_log: StrictUtf8Handler) -> None:
    keys, author = Keys.generate(), Keys.generate()
    stored = sign_event(author, 1, "after the bad challenge")
    script = Script(frames_first=[AUTH_LONE_SURROGATE], events=[stored])
    async with scripted_relay(script) as script:
        got = Collector()
        async with RelayPool(configs(script.url), keys=keys, backoff=FAST_BACKOFF) as pool:
            await pool.subscribe([{"kinds": [1]}], got)
            # before the fix the challenge tore the link down at every connection: no event
            assert await wait_until(lambda: len(got.events) == 1)
            status = pool.status()[0]
            assert status.connects == 1
            assert status.invalid_in == 1 and status.internal_errors == 0
            assert status.last_invalid is not None and "surrogate" in status.last_invalid
        assert script.authed == []  # nothing was signed for it
    refused = [line for line in strict_log.lines() if "refused" in line]
    assert refused and refused[0].startswith("INFO bot.relays: relay ")
    assert strict_log.failures == []


async def test_finding_7_peer_text_is_logged_by_a_strict_utf8_handler(
        strict_log: StrictUtf8Handler) -> None:
    author = Keys.generate()
    stored = sign_event(author, 1, "after the noise")
    frames = [NOTICE_LONE_SURROGATE, CLOSED_LONE_SURROGATE, NOTICE_FORGED_LINE]
    async with scripted_relay(Script(frames_first=frames, events=[stored])) as script:
        got = Collector()
        async with RelayPool(configs(script.url), backoff=FAST_BACKOFF) as pool:
            await pool.subscribe([{"kinds": [1]}], got)
            assert await wait_until(lambda: len(got.events) == 1)
            status = pool.status()[0]
            assert status.connects == 1 and status.invalid_in == 2
    assert strict_log.failures == []
    lines = strict_log.lines()
    notice = [line for line in lines if "NOTICE hello" in line]
    assert notice == ["INFO bot.relays: relay " + script.url
                      + ": NOTICE hello\\x0aERROR bot.ledger: forged line\\x1b[2J"]
    assert not any(line.startswith("ERROR bot.ledger") for line in lines)


def test_safe_formatter_escapes_what_a_peer_could_put_in_a_record(
        strict_log: StrictUtf8Handler) -> None:
    log = logging.getLogger("bot.relays")
    log.warning("peer said %s", "\udfff\nnext\u2028line\x85")
    try:
        raise ValueError("bad \ud800 value")
    except ValueError:
        log.exception("with a traceback")
    assert strict_log.failures == []
    lines = strict_log.lines()
    assert lines[0] == "WARNING bot.relays: peer said \\udfff\\x0anext\\u2028line\\x85"
    assert lines[1] == "ERROR bot.relays: with a traceback"
    assert "ValueError: bad \\ud800 value" in lines


async def test_the_frame_handler_never_raises_even_when_we_have_a_bug(
        strict_log: StrictUtf8Handler) -> None:
    calls: list[Event] = []

    async def broken_sink(conn: RelayConnection, sub_id: str, event: Event) -> None:
        calls.append(event)
        raise RuntimeError("a bug of ours")

    async def nothing(*_: object) -> None:
        return None

    async def no_subscriptions(conn: RelayConnection) -> list[tuple[str, list[Filter]]]:
        return []

    conn = RelayConnection(RelayConfig("ws://127.0.0.1:1"), keys=Keys.generate(),
                           on_event=broken_sink, on_eose=nothing, subscriptions=no_subscriptions,
                           backoff=FAST_BACKOFF)
    await conn.send_req("s", [{"kinds": [1]}])  # not connected: only remembered
    event = sign_event(Keys.generate(), 1, "fine")
    await conn.handle_frame(json.dumps(["EVENT", "s", event.to_dict()]))
    await conn.handle_frame(AUTH_LONE_SURROGATE)
    await conn.handle_frame(b"\xff not utf-8")
    assert calls == [event]
    assert conn.internal_errors == 1 and conn.invalid_in == 2
    assert any("a bug of ours" in line for line in strict_log.lines())
