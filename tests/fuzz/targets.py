"""Every entry point that takes input from outside, as a fuzz target.

A :class:`Target` pairs a strategy of hostile inputs with ``check(input) -> bool``: ``True``
when the input was accepted, ``False`` when it was refused the way that layer refuses (its typed
exception, or its rejection value). Anything else raised — another exception, or an
``AssertionError`` from the checks each target makes on what it accepted — is a crash. The CI
properties (``test_targets.py``) and the long campaign (``campaign.py``, ``scripts/fuzz``) both
run this one list.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from hypothesis import strategies as st

from bot.agent import commands, profiles
from bot.agent.inbox import open_dm
from bot.agent.replies import Ask, JobReplier
from bot.config import ConfigError, load_toml, parse_settings
from bot.logs import SafeFormatter
from bot.nostr import nip19, nip44, nip47, nip65, nip90
from bot.nostr.errors import InvalidEvent, Nip44Error, NostrError
from bot.nostr.event import Event, sign_event
from bot.nostr.nip11 import parse_relay_document
from bot.nostr.nip47 import Encryption, Nip47Error, NwcUri
from bot.nostr.nip57 import ValidZap, validate_zap_receipt
from bot.relays.backoff import BackoffPolicy
from bot.relays.config import RelayConfig, parse_relays_toml
from bot.relays.connection import RelayConnection
from bot.relays.messages import Filter
from bot.relays.pool import RelayPool
from bot.wallets import lnbits
from bot.wallets.base import InvalidInvoice, LnurlError, WalletProtocolError
from bot.wallets.bolt11 import decode_invoice
from bot.wallets.lnurl import LnurlClient, PayRequest
from bot.wallets.nwc import NwcWallet
from bot.work import wire
from storage import RequestRecord, RequestState
from tests.fuzz import strategies as S

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    name: str
    what: str
    inputs: st.SearchStrategy[Any]
    check: Callable[[Any], bool]
    ci_examples: int = 150


# --- plumbing ---------------------------------------------------------------------------------
_loop: asyncio.AbstractEventLoop | None = None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on this process's fuzz event loop (one, reused: targets keep state)."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(coro)


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return len(b)


class StrictLog(logging.Handler):
    """A handler that writes strict UTF-8 (a log file, JSON logs) through SafeFormatter and
    remembers what it could not write, and the last traceback logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.stream = io.TextIOWrapper(io.BufferedWriter(_Discard()), encoding="utf-8",
                                       errors="strict", write_through=True)
        self.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
        self.failures: list[str] = []
        self.last_traceback: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            self.stream.write(text + "\n")
        except Exception as exc:
            self.failures.append(f"{type(exc).__name__}: {exc}")
            return
        if record.exc_info:
            self.last_traceback = text


@contextmanager
def strict_logging() -> Iterator[StrictLog]:
    """Every ``bot`` log record of the block, at DEBUG, through a strict UTF-8 handler; a
    record it cannot write is a crash."""
    handler = StrictLog()
    logger = logging.getLogger("bot")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # keep a test runner's capture out of a million records
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    if handler.failures:
        raise AssertionError(f"a log record could not be written: {handler.failures[0]}")


def refused(fn: Callable[[], object], *typed: type[BaseException]) -> bool:
    """``True`` when ``fn`` returns, ``False`` when it raises one of ``typed``."""
    try:
        fn()
    except typed:
        return False
    return True


# --- relay frames -----------------------------------------------------------------------------
class _FrameTarget:
    """One connection, not connected (nothing is sent), with a subscription to ``S.SUB_ID``."""

    def __init__(self) -> None:
        self.conn: RelayConnection | None = None
        self.delivered: list[Event] = []

    async def _sink(self, conn: RelayConnection, sub_id: str, event: Event) -> None:
        self.delivered.append(event)

    async def _eose(self, conn: RelayConnection, sub_id: str) -> None:
        return None

    async def _subs(self, conn: RelayConnection) -> list[tuple[str, list[Filter]]]:
        return []

    async def _handle(self, frame: str | bytes) -> bool:
        if self.conn is None:
            self.conn = RelayConnection(
                RelayConfig("wss://fuzz.example"), keys=S.ME, on_event=self._sink,
                on_eose=self._eose, subscriptions=self._subs,
                backoff=BackoffPolicy(base_s=1.0, factor=2.0, cap_s=1.0, jitter=0.0))
        conn = self.conn
        await conn.send_req(S.SUB_ID, [{}])  # a CLOSED may have dropped it
        invalid, bugs = conn.invalid_in, conn.internal_errors
        with strict_logging() as log:
            await conn.handle_frame(frame)  # the one guard: must never raise
        if conn.internal_errors != bugs:
            raise AssertionError(f"the frame handler hit a bug:\n{log.last_traceback}")
        self.delivered.clear()
        return conn.invalid_in == invalid

    def check(self, frame: str | bytes) -> bool:
        return run(self._handle(frame))


# --- events and DMs ---------------------------------------------------------------------------
def check_event(case: tuple[str | bytes, Event | None]) -> bool:
    raw, origin = case
    try:
        event = Event.from_json(raw)
    except InvalidEvent:
        return False
    assert origin is None or event == origin, "a mutated event passed as another event"
    assert Event.from_json(event.to_json()) == event
    return True


def check_nip04(case: tuple[Event, str | None]) -> bool:
    event, expected = case
    try:
        dm = open_dm(S.ME, event)
    except NostrError:
        assert expected is None, "a correct NIP-04 DM was refused"
        return False
    assert dm.sender == S.PEER.public_hex
    assert expected is None or dm.text == expected
    return True


def check_nip44(case: tuple[str, str | None]) -> bool:
    payload, expected = case
    try:
        text = nip44.decrypt(payload, S.ME_PEER_CONV)
    except Nip44Error:
        assert expected in (None, S.REFUSED), "a correct NIP-44 payload was refused"
        return False
    assert expected != S.REFUSED, "a tampered NIP-44 payload was accepted"
    assert expected is None or text == expected
    return True


def check_seal(wrap: Event) -> bool:
    try:
        dm = open_dm(S.ME, wrap)
    except NostrError:
        return False
    assert dm.sender == S.PEER.public_hex and dm.protocol == "nip17"
    return True


def check_rumor(case: tuple[Event, str | None]) -> bool:
    wrap, expected = case
    try:
        dm = open_dm(S.ME, wrap)
    except NostrError:
        assert expected is None, "a correct gift wrap was refused"
        return False
    assert dm.sender == S.PEER.public_hex
    assert expected is None or dm.text == expected
    return True


def check_zap(receipt: Event) -> bool:
    result = validate_zap_receipt(receipt, provider_pubkey=S.PROVIDER.public_hex,
                                  recipient_pubkey=S.ME.public_hex)
    if not isinstance(result, ValidZap):
        return False
    assert result.amount_msat > 0 and result.zapper_pubkey == S.ZAPPER.public_hex
    return True


def check_relay_lists(event: Event) -> bool:
    def both() -> None:
        if event.kind == nip65.KIND_RELAY_LIST:
            nip65.parse_relay_list(event)
        else:
            nip65.parse_dm_relays(event)
    return refused(both, NostrError)


# --- NIP-47 -----------------------------------------------------------------------------------
def check_nip47_response(text: str) -> bool:
    def decode() -> None:
        response = nip47.decode_response(text)
        if response.result is not None and "payment_hash" in response.result:
            nip47.parse_transaction(response.result)
    return refused(decode, Nip47Error)


def check_nip47_notification(text: str) -> bool:
    return refused(lambda: nip47.parse_transaction(
        nip47.decode_notification(text).notification), Nip47Error)


def check_nip47_request(text: str) -> bool:
    return refused(lambda: nip47.decode_request(text), Nip47Error)


class _NwcAnswerTarget:
    """A wallet waiting for one answer; the wallet service's signed, encrypted answer is
    hostile. Whatever it holds, the waiting request must be done after it: answered, or failed
    at once with WalletProtocolError (never left to wait out its timeout)."""

    def __init__(self) -> None:
        self.wallet: NwcWallet | None = None

    async def _deliver(self, case: tuple[str, Encryption, bool]) -> bool:
        payload, scheme, garble = case
        if self.wallet is None:
            uri = NwcUri(S.WALLET.public_hex, ("wss://fuzz.example",), S.ME.secret_hex)
            never_started = RelayPool([RelayConfig("wss://fuzz.example")])
            self.wallet = NwcWallet(uri, never_started)
        wallet = self.wallet
        if '"notification_type"' in payload:  # a notification: nothing waits, nothing raises
            note = nip47.notification_event(S.WALLET, S.ME.public_hex, scheme, payload)
            with strict_logging():
                await wallet._on_event(note, "wss://fuzz.example")
            settled = not wallet._settlements.empty()
            while not wallet._settlements.empty():
                wallet._settlements.get_nowait()
            return settled
        request_id = "ab" * 32
        event = nip47.response_event(S.WALLET, S.ME.public_hex, request_id, scheme, payload)
        if garble:
            event = sign_event(S.WALLET, event.kind, event.content[::-1],
                               [list(t) for t in event.tags])
        future: asyncio.Future[nip47.Response] = asyncio.get_running_loop().create_future()
        wallet._pending[request_id] = future
        try:
            with strict_logging():
                await wallet._on_event(event, "wss://fuzz.example")
        finally:
            wallet._pending.pop(request_id, None)
        assert future.done(), "the answer left the request waiting"
        if future.exception() is not None:
            assert isinstance(future.exception(), WalletProtocolError), future.exception()
            return False
        return True

    def check(self, case: tuple[str, Encryption, bool]) -> bool:
        return run(self._deliver(case))


def check_nwc_uri(text: str) -> bool:
    try:
        uri = nip47.parse_nwc_uri(text)
    except Nip47Error as exc:
        assert S.ME.secret_hex not in str(exc), "the secret leaked into an error"
        return False
    assert nip47.parse_nwc_uri(uri.to_uri()) == uri
    return True


async def _no_event(filters: list[dict[str, object]]) -> list[Event]:
    return []  # event and job inputs are then refused: the fetch itself is the relay pool's


JOB_REPLIER = JobReplier(S.ME, 4000, _no_event, ("test",))


def check_job_request(event: Event) -> bool:
    """``nip90.parse_request``, then what the agent reads from the stored request (an Ask or a
    Refusal value, never an exception)."""
    if event.kind == nip90.KIND_DELETION:
        return refused(lambda: nip90.deleted_ids(event), NostrError)
    stored = RequestRecord(id=event.id, sender=event.pubkey, protocol="nip90",
                           body=event.to_json(), reply_to=event.id, relays=(),
                           state=RequestState.NEW, invoice=None, answer=None,
                           answer_msat=None, created_at=event.created_at,
                           updated_at=event.created_at)
    reading = run(JOB_REPLIER.read(stored, False))
    try:
        request = nip90.parse_request(S.ME, event)
    except NostrError:
        assert not isinstance(reading, Ask), "a refused request was read as a question"
        return False
    assert request.inputs and len(request.inputs) <= nip90.MAX_INPUTS
    assert request.bid_msat is None or request.bid_msat >= 0
    return isinstance(reading, Ask)


def _sealable(payload: str) -> bool:
    try:
        payload.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return 0 < len(payload.encode()) <= 65535


nwc_answers = st.tuples(
    (S.nip47_responses | S.nip47_notifications).map(lambda p: p if _sealable(p) else "{}"),
    st.sampled_from([Encryption.NIP44_V2, Encryption.NIP04]),
    st.integers(0, 9).map(lambda n: n == 0),
)


# --- HTTP answers (LNURL, lightning address) --------------------------------------------------
class _LnurlTarget:
    """An LnurlClient whose HTTP client answers with the drawn answers (httpx's own mock
    transport injected into the client, as every HTTP adapter here takes one)."""

    def __init__(self, call: Callable[[LnurlClient], Coroutine[Any, Any, object]]) -> None:
        self.call = call
        self.answers: list[S.HttpAnswer] = []
        self.client: LnurlClient | None = None

    def _answer(self, request: httpx.Request) -> httpx.Response:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return httpx.Response(answer.status, content=answer.body)

    async def _call(self) -> bool:
        if self.client is None:
            http = httpx.AsyncClient(transport=httpx.MockTransport(self._answer))
            self.client = LnurlClient(http)
        try:
            await self.call(self.client)
        except LnurlError:
            return False
        return True

    def check(self, answers: S.HttpAnswer | tuple[S.HttpAnswer, ...]) -> bool:
        self.answers = list(answers) if isinstance(answers, tuple) else [answers]
        return run(self._call())


PAY = PayRequest(callback="https://pay.example/cb", min_sendable_msat=1000,
                 max_sendable_msat=10**11, metadata=S.METADATA)


async def _pay_request(client: LnurlClient) -> object:
    return await client.fetch_pay_request("https://pay.example/.well-known/lnurlp/timmy")


async def _callback(client: LnurlClient) -> object:
    return await client.fetch_invoice(PAY, 21_000, network="bc")


GOOD_HASH = decode_invoice(S.GOOD_INVOICE).payment_hash


async def _verify(client: LnurlClient) -> object:
    return await client.verify("https://pay.example/verify/x", payment_hash=GOOD_HASH)


async def _address(client: LnurlClient) -> object:
    return await client.invoice_for_address("timmy@pay.example", 21_000, network="bc")


# --- the rest ---------------------------------------------------------------------------------
def check_profile(event: Event) -> bool:
    address = profiles.parse_lud16(event)
    assert address is None or ("@" in address and address == address.strip().lower())
    return address is not None


profile_events = st.builds(
    lambda content: S.sign_anyway(S.PEER, 0, content, []),
    S.mutated_document({"name": "asker", "lud16": "Asker@Pay.Example", "about": "hi"}))


def check_lnbits(body: bytes) -> bool:
    hashed = lnbits.parse_webhook_hash(body)
    settled = lnbits.parse_ws_message(body)
    assert hashed is None or len(hashed) == 64
    assert settled is None or settled.amount_msat > 0
    return hashed is not None or settled is not None


def check_ai_answer(body: bytes) -> bool:
    decoded = wire.parse_json_bytes(body)
    if isinstance(decoded, wire.ParseProblem):
        return False
    return not isinstance(wire.parse_completion(decoded), wire.ParseProblem)


def check_command(case: tuple[str, bool]) -> bool:
    text, is_admin = case
    command = commands.parse(text, is_admin)
    if isinstance(command, commands.Invalid):
        return False
    if isinstance(command, commands.Topup):
        assert 1 <= command.sats <= commands.MAX_TOPUP_SAT
    if isinstance(command, commands.AdminCredit):
        assert is_admin and 1 <= command.sats <= commands.MAX_CREDIT_SAT
    if isinstance(command, commands.AdminLimit | commands.AdminPause | commands.AdminStatus):
        assert is_admin
    return True


FUZZ_CONFIG = Path("/nonexistent-fuzz-dir/timmy.toml")


def check_timmy_toml(text: str) -> bool:
    return refused(lambda: parse_settings(load_toml(text, str(FUZZ_CONFIG)), source=FUZZ_CONFIG,
                                          environ={}), ConfigError)


def check_relays_toml(text: str) -> bool:
    return refused(lambda: parse_relays_toml(text), ConfigError)


def check_nip19(text: str) -> bool:
    return refused(lambda: nip19.decode(text), NostrError)


def check_bolt11(text: str) -> bool:
    return refused(lambda: decode_invoice(text), InvalidInvoice)


relay_list_events = st.builds(
    lambda kind, tags: S.sign_anyway(S.PEER, kind, "", tags),
    st.sampled_from([nip65.KIND_RELAY_LIST, nip65.KIND_DM_RELAY_LIST, 1]),
    st.lists(st.lists(st.sampled_from(["r", "relay", "read", "write", "wss://r.example",
                                       "ws://[::1]:1", "wss://[", "wss://[]", "http://x"])
                      | S.texts, max_size=3), max_size=6),
)

TARGETS: list[Target] = [
    Target("relay_frame", "RelayConnection.handle_frame (must never raise)",
           S.relay_frames(), _FrameTarget().check, 400),
    Target("event", "Event.from_json", S.event_texts(), check_event, 200),
    Target("dm_nip04", "open_dm of a kind-4 event", S.nip04_dms(), check_nip04, 200),
    Target("dm_nip44", "nip44.decrypt", S.nip44_payloads(), check_nip44, 200),
    Target("dm_seal", "open_dm of a gift wrap around a hostile seal",
           S.gift_wraps_with_hostile_seal(), check_seal, 120),
    Target("dm_rumor", "open_dm of a gift wrap around a hostile rumor",
           S.gift_wraps_with_hostile_rumor(), check_rumor, 200),
    Target("zap_receipt", "validate_zap_receipt of a receipt signed by the provider",
           S.zap_receipts(), check_zap, 150),
    Target("bolt11", "decode_invoice", S.bolt11_texts, check_bolt11, 120),
    Target("nip47_response", "nip47.decode_response (+ parse_transaction)",
           S.nip47_responses, check_nip47_response, 200),
    Target("nip47_notification", "nip47.decode_notification + parse_transaction",
           S.nip47_notifications, check_nip47_notification, 150),
    Target("nip47_request", "nip47.decode_request", S.nip47_requests, check_nip47_request, 150),
    Target("nwc_answer", "NwcWallet answer event for a waiting request (fails at once)",
           nwc_answers, _NwcAnswerTarget().check, 250),
    Target("nwc_uri", "nip47.parse_nwc_uri", S.nwc_uris(), check_nwc_uri, 300),
    Target("nip90_request", "nip90.parse_request (clear and encrypted) and deleted_ids",
           S.job_requests(), check_job_request, 250),
    Target("nip11", "parse_relay_document", S.nip11_documents,
           lambda raw: refused(lambda: parse_relay_document(raw), NostrError), 200),
    Target("profile_lud16", "bot.agent.profiles.parse_lud16 of a kind-0 event", profile_events,
           check_profile, 300),
    Target("nip65", "parse_relay_list / parse_dm_relays", relay_list_events,
           check_relay_lists, 120),
    Target("nip19", "nip19.decode", S.nip19_texts, check_nip19, 150),
    Target("lnurl_pay_request", "LnurlClient.fetch_pay_request",
           S.http_answers(S.PAY_REQUEST), _LnurlTarget(_pay_request).check, 150),
    Target("lnurl_callback", "LnurlClient.fetch_invoice", S.callback_answers,
           _LnurlTarget(_callback).check, 80),
    Target("lnurl_verify", "LnurlClient.verify", S.verify_answers,
           _LnurlTarget(_verify).check, 100),
    Target("lightning_address", "LnurlClient.invoice_for_address (both answers)",
           st.tuples(S.http_answers(S.PAY_REQUEST), S.callback_answers),
           _LnurlTarget(_address).check, 80),
    Target("lnbits_message", "LNbits webhook bodies and websocket messages",
           S.http_answers({"payment_hash": "ab" * 32, "payment": {
               "status": "success", "payment_hash": "ab" * 32, "amount": 1000}}).map(
               lambda a: a.body), check_lnbits, 150),
    Target("ai_answer", "AI endpoint answer bodies (wire.parse_json_bytes + parse_completion)",
           S.http_answers({"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).map(
               lambda a: a.body), check_ai_answer, 150),
    Target("dm_command", "bot.agent.commands.parse", st.tuples(S.command_texts, st.booleans()),
           check_command, 300),
    Target("timmy_toml", "load_toml + parse_settings (timmy.toml)", S.toml_documents(),
           check_timmy_toml, 150),
    Target("relays_toml", "parse_relays_toml", S.toml_documents(relays=True),
           check_relays_toml, 150),
]
BY_NAME = {t.name: t for t in TARGETS}
