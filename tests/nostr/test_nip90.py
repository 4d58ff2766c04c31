"""NIP-90 and NIP-89 codecs: requests built by nostr-sdk (code nobody here wrote) are read, our
feedback and results carry the NIP's tags, encrypted requests are answered in their own scheme
(checked by nostr-sdk's decryption), every malformed request is a typed error."""

import json

import nostr_sdk as sdk
import pytest

from bot.nostr import nip89, nip90
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys

PROVIDER = Keys.generate()
PROVIDER_SDK = sdk.PublicKey.parse(PROVIDER.public_hex)

# The encrypted params of NIP-90's "Encrypted Params" example, as the NIP gives them.
NIP_EXAMPLE_PARAMS = [
    ["i", "what is the capital of France? ", "text"],
    ["param", "model", "LLaMA-2"],
    ["param", "max_tokens", "512"],
    ["param", "temperature", "0.5"],
    ["param", "top-k", "50"],
    ["param", "top-p", "0.7"],
    ["param", "frequency_penalty", "1"],
]


def _sdk_request(customer: sdk.Keys, tags: list[list[str]], content: str = "") -> Event:
    built = (sdk.EventBuilder(sdk.Kind(5050), content)
             .tags([sdk.Tag.parse(t) for t in tags]).finalize(customer))
    return Event.from_json(built.as_json())


def test_clear_request_from_nostr_sdk() -> None:
    customer = sdk.Keys.generate()
    event = _sdk_request(customer, [
        ["i", "what is a zap?", "text"], ["param", "max_tokens", "64"], ["bid", "21000"],
        ["relays", "wss://a.example", "https://not-a-relay"], ["p", PROVIDER.public_hex]])
    req = nip90.parse_request(PROVIDER, event)
    assert req.inputs == (nip90.JobInput("what is a zap?", "text", "", ""),)
    assert req.param("max_tokens") == "64"
    assert req.bid_msat == 21000
    assert req.relays == ("wss://a.example",)
    assert req.targets == (PROVIDER.public_hex,)
    assert req.encryption == ""
    assert req.customer == customer.public_key().to_hex()


@pytest.mark.parametrize("scheme", ["nip04", "nip44"])
def test_encrypted_request_nip_example(scheme: str) -> None:
    customer = sdk.Keys.generate()
    plain = json.dumps(NIP_EXAMPLE_PARAMS)
    content = (customer.nip04_encrypt(PROVIDER_SDK, plain) if scheme == "nip04" else
               sdk.nip44_encrypt(customer.secret_key(), PROVIDER_SDK, plain,
                                 sdk.Nip44Version.V2))
    event = _sdk_request(customer, [["p", PROVIDER.public_hex], ["encrypted"]], content)
    req = nip90.parse_request(PROVIDER, event)
    assert req.encryption == scheme
    assert req.inputs[0].data == "what is the capital of France? "
    assert req.param("model") == "LLaMA-2" and req.param("frequency_penalty") == "1"

    out = nip90.result(PROVIDER, req, "Paris", amount_msat=0)
    assert out.kind == 6050 and ["encrypted"] in [list(t) for t in out.tags]
    assert "i" not in [t[0] for t in out.tags]  # no clear-text input
    assert "France" not in out.to_json().replace(event.to_json(), "")
    decrypted = (customer.nip04_decrypt(PROVIDER_SDK, out.content) if scheme == "nip04" else
                 sdk.nip44_decrypt(customer.secret_key(), PROVIDER_SDK, out.content))
    assert decrypted == "Paris"

    fb = nip90.feedback(PROVIDER, req, "error", "bid too low: 5 sats")
    assert fb.first_tag("status") == "error" and len(next(
        t for t in fb.tags if t[0] == "status")) == 2  # the reason is not in clear
    said = (customer.nip04_decrypt(PROVIDER_SDK, fb.content) if scheme == "nip04" else
            sdk.nip44_decrypt(customer.secret_key(), PROVIDER_SDK, fb.content))
    assert said == "bid too low: 5 sats"


def test_feedback_and_result_tags() -> None:
    customer = Keys.generate()
    event = sign_event(customer, 5050, "", [["i", "hi", "text"], ["p", PROVIDER.public_hex]])
    req = nip90.parse_request(PROVIDER, event)
    fb = nip90.feedback(PROVIDER, req, "payment-required", "pay 3 sats", amount_msat=3000,
                        bolt11="lnbc30n1x", relay_hint="wss://r.example")
    tags = [list(t) for t in fb.tags]
    assert fb.kind == 7000 and fb.content == ""
    assert ["status", "payment-required", "pay 3 sats"] in tags
    assert ["amount", "3000", "lnbc30n1x"] in tags
    assert ["e", event.id, "wss://r.example"] in tags and ["p", customer.public_hex] in tags
    out = nip90.result(PROVIDER, req, "hello", amount_msat=2000)
    tags = [list(t) for t in out.tags]
    assert out.kind == 6050 and out.content == "hello"
    assert ["request", event.to_json()] in tags
    assert Event.from_json(out.first_tag("request") or "") == event
    assert ["i", "hi", "text"] in tags and ["amount", "2000"] in tags
    assert ["p", customer.public_hex] in tags


@pytest.mark.parametrize(("tags", "content", "says"), [
    ([], "", "no i input"),
    ([["i", "x", "video"]], "", "input type"),
    ([["i", "nothex", "event"]], "", "not an event id"),
    ([["i", "x", "text"], ["bid", "12.5"]], "", "bid"),
    ([["i", "x", "text"], ["bid", "abc"]], "", "bid"),
    ([["i", "x", "text"], ["bid", "²"]], "", "bid"),  # found by the fuzz suite: ValueError
    ([["i", "x", "text"], ["bid", "١٢٣"]], "", "bid"),  # other scripts' digits are not millisats
    ([["i", "x", "text"], ["param", "k", "v" * 300]], "", "param"),
    ([["i", "x", "text"]] * 9, "", "too many"),
    ([["p", "zz"], ["i", "x"]], "", "p tag"),
    ([["encrypted"]], "AAAA", "must tag its provider"),
    ([["encrypted"], ["p", PROVIDER.public_hex]], "AAAA", "does not decrypt"),
    ([["encrypted"], ["p", PROVIDER.public_hex]], "x?iv=y", "does not decrypt"),
])
def test_malformed_requests(tags: list[list[str]], content: str, says: str) -> None:
    event = sign_event(Keys.generate(), 5050, content, tags)
    with pytest.raises(nip90.JobRequestError, match=says):
        nip90.parse_request(PROVIDER, event)


@pytest.mark.parametrize("plain", ["not json", "{}", '[["i", 1]]', "[" * 40 + "]" * 40])
def test_encrypted_params_not_tags(plain: str) -> None:
    customer = Keys.generate()
    content = nip90.encrypt(customer, "nip44", PROVIDER.public_hex, plain)
    event = sign_event(customer, 5050, content, [["p", PROVIDER.public_hex], ["encrypted"]])
    with pytest.raises(nip90.JobRequestError):
        nip90.parse_request(PROVIDER, event)


def test_deleted_ids() -> None:
    who = Keys.generate()
    ids = ["ab" * 32, "cd" * 32]
    deletion = sign_event(who, 5, "", [["e", ids[0]], ["e", "bad"], ["e", ids[1]], ["k", "5050"]])
    assert nip90.deleted_ids(deletion) == tuple(ids)
    with pytest.raises(nip90.JobRequestError.__mro__[1]):
        nip90.deleted_ids(sign_event(who, 1, "", []))


def test_handler_info_announcement() -> None:
    ev = nip89.handler_info(PROVIDER, "timmy-5050", [5050], {"name": "Timmy", "about": "AI"})
    assert ev.kind == 31990
    assert [list(t) for t in ev.tags] == [["d", "timmy-5050"], ["k", "5050"]]
    assert json.loads(ev.content) == {"name": "Timmy", "about": "AI"}
    parsed = sdk.Event.from_json(ev.to_json())  # nostr-sdk reads it as a valid event
    assert parsed.kind().as_u16() == 31990 and parsed.verify()


def test_error_feedback_on_an_unreadable_request() -> None:
    customer = Keys.generate()
    event = sign_event(customer, 5050, "AAAA", [["p", PROVIDER.public_hex], ["encrypted"]])
    fb = nip90.feedback(PROVIDER, event, "error", "does not decrypt")
    tags = [list(t) for t in fb.tags]
    assert ["status", "error", "does not decrypt"] in tags  # said in clear: no scheme known
    assert ["e", event.id, ""] in tags and ["p", customer.public_hex] in tags
    assert ["encrypted"] not in tags
