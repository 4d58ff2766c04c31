"""The NIP-90 replier reads a stored request into an Ask or a Refusal, whatever it holds."""

from __future__ import annotations

import pytest

from bot.agent.replies import Ask, EventFetch, JobReplier, Refusal
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from bot.relays.filters import matches_any
from storage import RequestRecord, RequestState

PROVIDER = Keys.generate()
CUSTOMER = Keys.generate()
MODELS = ("default-model", "other-model")


async def nowhere(filters: list[dict[str, object]]) -> list[Event]:
    """Relays that hold nothing."""
    return []


def holding(*events: Event) -> EventFetch:
    """Relays that hold ``events`` (answering a query with those matching it, NIP-01)."""

    async def fetch(filters: list[dict[str, object]]) -> list[Event]:
        return [e for e in events if matches_any(filters, e)]

    return fetch


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
    event = sign_event(CUSTOMER, 5050, "", [["i", note.id, "event"], ["i", "and this", "text"]])
    reading = await JobReplier(PROVIDER, 4000, holding(note), MODELS).read(record(event), False)
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


OTHER_PROVIDER = Keys.generate()


def earlier_job(*providers: Keys) -> Event:
    return sign_event(CUSTOMER, 5050, "", [["i", "write a haiku", "text"],
                                           *(["p", k.public_hex] for k in providers)])


def result_of(job: Event, by: Keys, output: str, *extra: list[str],
              created_at: int | None = None) -> Event:
    return sign_event(by, 6050, output, [["request", job.to_json()], ["e", job.id],
                                         ["p", job.pubkey], *extra], created_at=created_at)


def chained(job: Event) -> Event:
    return sign_event(CUSTOMER, 5050, "", [["i", job.id, "job"], ["i", "translate it", "text"]])


async def test_a_job_input_is_the_earliest_clear_output_of_a_provider_it_tagged() -> None:
    job = earlier_job(OTHER_PROVIDER, PROVIDER)
    relays = holding(
        job,
        result_of(job, Keys.generate(), "a forged output by a provider nobody asked", created_at=1),
        result_of(job, OTHER_PROVIDER, "a secret", ["encrypted"], created_at=2),
        result_of(job, OTHER_PROVIDER, "old pond, frog jumps in", created_at=3),
        result_of(job, PROVIDER, "a later output", created_at=4))
    reading = await JobReplier(PROVIDER, 4000, relays, MODELS).read(record(chained(job)), False)
    assert isinstance(reading, Ask)
    assert reading.text == "old pond, frog jumps in\n\ntranslate it"


async def test_a_job_input_without_a_usable_result_is_refused() -> None:
    job = earlier_job(OTHER_PROVIDER)
    note = sign_event(CUSTOMER, 1, "a note", [])
    untargeted = earlier_job()
    cases = [
        ("was not found", job, holding()),
        ("has no result", job, holding(job, result_of(job, OTHER_PROVIDER, "hidden",
                                                      ["encrypted"]))),
        ("is not a job request", note, holding(note)),
        ("tagged no provider", untargeted, holding(untargeted)),
    ]
    for reason, target, relays in cases:
        reading = await JobReplier(PROVIDER, 4000, relays, MODELS).read(
            record(chained(target)), False)
        assert isinstance(reading, Refusal) and reason in reading.reason, (reason, reading)
