"""The NIP-90 replier reads a stored request into an Ask or a Refusal, whatever it holds."""

from __future__ import annotations

import pytest

from bot.agent.replies import Ask, JobReplier, Refusal
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from storage import RequestRecord, RequestState

PROVIDER = Keys.generate()
CUSTOMER = Keys.generate()
MODELS = ("default-model", "other-model")


async def nowhere(event_id: str) -> Event | None:
    """An event source that holds nothing."""
    return None


def record(event: Event) -> RequestRecord:
    return RequestRecord(id=event.id, sender=event.pubkey, protocol="nip90",
                         body=event.to_json(), reply_to=event.id, relays=(),
                         state=RequestState.NEW, invoice=None, answer=None, answer_msat=None,
                         created_at=event.created_at, updated_at=event.created_at)


async def test_max_tokens_is_read() -> None:
    event = sign_event(CUSTOMER, 5050, "", [["i", "hi", "text"], ["param", "max_tokens", "64"]])
    reading = await JobReplier(PROVIDER, 4000, nowhere, MODELS).read(record(event), False)
    assert isinstance(reading, Ask) and reading.max_tokens == 64


@pytest.mark.parametrize("value", ["²", "١٢٣", "0", "-1", "1e3", "9999999"])
async def test_max_tokens_that_is_not_a_small_whole_number_is_refused(value: str) -> None:
    # "²" is a digit to str.isdigit but not to int(): it raised ValueError out of read
    event = sign_event(CUSTOMER, 5050, "", [["i", "hi", "text"], ["param", "max_tokens", value]])
    reading = await JobReplier(PROVIDER, 4000, nowhere, MODELS).read(record(event), False)
    assert isinstance(reading, Refusal) and "max_tokens" in reading.reason


async def test_event_input_unknown_to_the_source_is_refused() -> None:
    event = sign_event(CUSTOMER, 5050, "", [["i", "ab" * 32, "event"]])
    reading = await JobReplier(PROVIDER, 4000, nowhere, MODELS).read(record(event), False)
    assert isinstance(reading, Refusal) and "not found" in reading.reason


async def test_event_input_is_the_fetched_content() -> None:
    note = sign_event(CUSTOMER, 1, "the text of a note", [])

    async def holding(event_id: str) -> Event | None:
        return note if event_id == note.id else None

    event = sign_event(CUSTOMER, 5050, "", [["i", note.id, "event"], ["i", "and this", "text"]])
    reading = await JobReplier(PROVIDER, 4000, holding, MODELS).read(record(event), False)
    assert isinstance(reading, Ask) and reading.text == "the text of a note\n\nand this"


def ask_with(*params: list[str]) -> Event:
    return sign_event(CUSTOMER, 5050, "", [["i", "hi", "text"], *params])


@pytest.mark.parametrize(("value", "read"), [("0", 0.0), ("0.7", 0.7), ("2", 2.0),
                                             (".5", 0.5), ("1.999999", 1.999999)])
async def test_temperature_is_read(value: str, read: float) -> None:
    reading = await JobReplier(PROVIDER, 4000, nowhere, MODELS).read(
        record(ask_with(["param", "temperature", value])), False)
    assert isinstance(reading, Ask) and reading.temperature == read


@pytest.mark.parametrize("value", ["2.1", "-0.5", "nan", "inf", "1e0", "", "½", "0x1",
                                   "1.2345678", "١"])
async def test_temperature_out_of_range_or_not_a_plain_number_is_refused(value: str) -> None:
    reading = await JobReplier(PROVIDER, 4000, nowhere, MODELS).read(
        record(ask_with(["param", "temperature", value])), False)
    assert isinstance(reading, Refusal) and "temperature" in reading.reason


async def test_an_offered_model_is_read_and_another_refused_naming_the_offer() -> None:
    replier = JobReplier(PROVIDER, 4000, nowhere, MODELS)
    reading = await replier.read(record(ask_with(["param", "model", "other-model"])), False)
    assert isinstance(reading, Ask) and reading.model == "other-model"
    reading = await replier.read(record(ask_with(["param", "model", "gpt-9"])), False)
    assert isinstance(reading, Refusal)
    assert "'gpt-9' is not offered" in reading.reason and "other-model" in reading.reason
    reading = await replier.read(record(ask_with()), False)
    assert isinstance(reading, Ask) and reading.model is None and reading.temperature is None
