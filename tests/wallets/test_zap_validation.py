"""NIP-57 pure code: zap requests (appendix A/D) and receipt validation (appendix F)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import bech32
import bolt11
import pytest
from bolt11 import MilliSatoshi
from bolt11.models.tags import Tag, TagChar, Tags

from bot.nostr import nip57
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys
from bot.nostr.nip57 import ValidZap, ZapInvalid, ZapRejection
from bot.wallets.bolt11 import MAX_INVOICE_CHARS
from tests.fuzz.strategies import long_bolt11

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "nip57_examples.json").read_text()
)

AGENT = Keys.generate()
PROVIDER = Keys.generate()
ZAPPER = Keys.generate()
RELAYS = ("ws://127.0.0.1:1",)


def make_invoice(amount_msat: int | None, description: str, preimage: bytes) -> str:
    tags = Tags(
        [
            Tag(TagChar.payment_hash, hashlib.sha256(preimage).hexdigest()),
            Tag(TagChar.payment_secret, os.urandom(32).hex()),
            Tag(TagChar.description_hash, hashlib.sha256(description.encode()).hexdigest()),
            Tag(TagChar.expire_time, 600),
        ]
    )
    invoice = bolt11.Bolt11(
        currency="bcrt",
        date=int(time.time()),
        tags=tags,
        amount_msat=MilliSatoshi(amount_msat) if amount_msat is not None else None,
    )
    encoded: str = bolt11.encode(invoice, private_key=os.urandom(32).hex())
    return encoded


def make_receipt(
    *,
    request: Event | None = None,
    amount_msat: int = 21_000,
    invoice_amount_msat: int | None = None,
    signer: Keys = PROVIDER,
    description: str | None = None,
    hashed_description: str | None = None,
    preimage: bytes | None = None,
    preimage_tag: str | None = None,
) -> Event:
    if request is None:
        request = nip57.build_zap_request(
            ZAPPER, recipient_pubkey=AGENT.public_hex, amount_msat=amount_msat, relays=RELAYS
        )
    desc = description if description is not None else request.to_json()
    pre = preimage if preimage is not None else os.urandom(32)
    invoice = make_invoice(
        invoice_amount_msat if invoice_amount_msat is not None else amount_msat,
        hashed_description if hashed_description is not None else desc,
        pre,
    )
    return nip57.build_zap_receipt(
        signer,
        zap_request=request,
        description=desc,
        bolt11_invoice=invoice,
        paid_at=int(time.time()),
        preimage=preimage_tag if preimage_tag is not None else pre.hex(),
    )


def validate(receipt: Event) -> ValidZap | ZapInvalid:
    return nip57.validate_zap_receipt(
        receipt, provider_pubkey=PROVIDER.public_hex, recipient_pubkey=AGENT.public_hex
    )


def rejected(receipt: Event) -> ZapRejection:
    result = validate(receipt)
    assert isinstance(result, ZapInvalid), result
    return result.reason


def test_valid_receipt_is_accepted_with_zapper_and_amount() -> None:
    preimage = os.urandom(32)
    receipt = make_receipt(amount_msat=42_000, preimage=preimage)
    result = validate(receipt)
    assert isinstance(result, ValidZap)
    assert result.amount_msat == 42_000 and type(result.amount_msat) is int
    assert result.zapper_pubkey == ZAPPER.public_hex
    assert result.payment_hash == hashlib.sha256(preimage).hexdigest()
    assert result.event_id is None
    assert result.receipt_id == receipt.id


def test_e_tag_is_reported() -> None:
    job_event = "ab" * 32
    request = nip57.build_zap_request(
        ZAPPER,
        recipient_pubkey=AGENT.public_hex,
        amount_msat=5_000,
        relays=RELAYS,
        event_id=job_event,
        content="for the answer",
    )
    result = validate(make_receipt(request=request, amount_msat=5_000))
    assert isinstance(result, ValidZap)
    assert result.event_id == job_event and result.comment == "for the answer"


def test_wrong_signer() -> None:
    assert rejected(make_receipt(signer=Keys.generate())) is ZapRejection.WRONG_SIGNER


def test_wrong_amount() -> None:
    receipt = make_receipt(amount_msat=21_000, invoice_amount_msat=2_100_000)
    assert rejected(receipt) is ZapRejection.AMOUNT_MISMATCH


def test_description_hash_mismatch() -> None:
    receipt = make_receipt(hashed_description="something else")
    assert rejected(receipt) is ZapRejection.DESCRIPTION_HASH_MISMATCH


def test_foreign_p() -> None:
    request = nip57.build_zap_request(
        ZAPPER, recipient_pubkey=Keys.generate().public_hex, amount_msat=21_000, relays=RELAYS
    )
    assert rejected(make_receipt(request=request)) is ZapRejection.FOREIGN_P


def test_two_p_tags() -> None:
    request = sign_event(
        ZAPPER,
        nip57.ZAP_REQUEST_KIND,
        "",
        [
            ["relays", *RELAYS],
            ["amount", "21000"],
            ["p", AGENT.public_hex],
            ["p", Keys.generate().public_hex],
        ],
    )
    assert rejected(make_receipt(request=request)) is ZapRejection.NOT_EXACTLY_ONE_P


def test_request_without_amount_tag_is_valid_for_the_invoice_amount() -> None:
    """Appendix F checks the amount tag only if present: the bolt11 amount is the zap's."""
    request = sign_event(
        ZAPPER, nip57.ZAP_REQUEST_KIND, "", [["relays", *RELAYS], ["p", AGENT.public_hex]]
    )
    zap = validate(make_receipt(request=request, amount_msat=34_000))
    assert isinstance(zap, ValidZap)
    assert zap.amount_msat == 34_000


def test_tampered_zap_request_signature() -> None:
    request = nip57.build_zap_request(
        ZAPPER, recipient_pubkey=AGENT.public_hex, amount_msat=21_000, relays=RELAYS
    )
    raw = request.to_dict()
    raw["content"] = "changed"
    desc = json.dumps(raw)
    receipt = make_receipt(request=request, description=desc)
    assert rejected(receipt) is ZapRejection.BAD_ZAP_REQUEST


def test_preimage_mismatch() -> None:
    receipt = make_receipt(preimage_tag=os.urandom(32).hex())
    assert rejected(receipt) is ZapRejection.PREIMAGE_MISMATCH


def test_receipt_p_must_be_recipient() -> None:
    good = make_receipt()
    tags = [list(t) for t in good.tags if t[0] != "p"] + [["p", Keys.generate().public_hex]]
    forged = sign_event(PROVIDER, good.kind, good.content, tags, good.created_at)
    assert rejected(forged) is ZapRejection.RECEIPT_P_MISMATCH


def test_missing_bolt11_and_description() -> None:
    good = make_receipt()
    no_bolt11 = sign_event(
        PROVIDER, good.kind, "", [list(t) for t in good.tags if t[0] != "bolt11"]
    )
    assert rejected(no_bolt11) is ZapRejection.MISSING_BOLT11
    no_desc = sign_event(
        PROVIDER, good.kind, "", [list(t) for t in good.tags if t[0] != "description"]
    )
    assert rejected(no_desc) is ZapRejection.MISSING_DESCRIPTION
    garbage = sign_event(
        PROVIDER,
        good.kind,
        "",
        [["bolt11", "lnbc1garbage"] if t[0] == "bolt11" else list(t) for t in good.tags],
    )
    assert rejected(garbage) is ZapRejection.BAD_BOLT11


def test_finding_4_a_huge_integer_in_the_zap_request_is_a_rejection() -> None:
    request = nip57.build_zap_request(
        ZAPPER, recipient_pubkey=AGENT.public_hex, amount_msat=21_000, relays=RELAYS
    )
    # the campaign's input: the description (which the invoice commits to) holds an integer
    # longer than Python's 4,300-digit limit; json.loads raised a plain ValueError
    description = request.to_json().replace(
        f'"created_at":{request.created_at}', '"created_at":' + "9" * 5000)
    assert description != request.to_json()
    result = validate(make_receipt(request=request, description=description))
    assert isinstance(result, ZapInvalid)
    assert result.reason is ZapRejection.BAD_ZAP_REQUEST
    assert "integer longer than" in result.detail


def test_finding_5_a_100k_bolt11_is_refused_before_the_decoder() -> None:
    good = make_receipt()
    huge = long_bolt11(100_000)  # the campaign's input: 100k characters, valid checksum
    assert len(huge) == 100_000 and bech32.bech32_decode(huge)[0] == "lnbc10u"
    receipt = sign_event(PROVIDER, good.kind, "",
                         [["bolt11", huge] if t[0] == "bolt11" else list(t) for t in good.tags])
    result = validate(receipt)
    assert isinstance(result, ZapInvalid)
    assert result.reason is ZapRejection.BAD_BOLT11
    # refused by the length cap, before the library saw it (it took about a second here)
    assert result.detail == f"invoice longer than {MAX_INVOICE_CHARS} characters"


def test_invoice_without_amount() -> None:
    request = nip57.build_zap_request(
        ZAPPER, recipient_pubkey=AGENT.public_hex, amount_msat=21_000, relays=RELAYS
    )
    desc = request.to_json()
    pre = os.urandom(32)
    receipt = nip57.build_zap_receipt(
        PROVIDER,
        zap_request=request,
        description=desc,
        bolt11_invoice=make_invoice(None, desc, pre),
        paid_at=int(time.time()),
    )
    assert rejected(receipt) is ZapRejection.NO_AMOUNT


def test_not_a_receipt() -> None:
    note = sign_event(PROVIDER, 1, "hello", [])
    assert rejected(note) is ZapRejection.NOT_A_RECEIPT


def test_lnurl_mismatch_only_when_both_known() -> None:
    request = nip57.build_zap_request(
        ZAPPER,
        recipient_pubkey=AGENT.public_hex,
        amount_msat=21_000,
        relays=RELAYS,
        lnurl="lnurl1other",
    )
    receipt = make_receipt(request=request)
    assert isinstance(validate(receipt), ValidZap)
    result = nip57.validate_zap_receipt(
        receipt,
        provider_pubkey=PROVIDER.public_hex,
        recipient_pubkey=AGENT.public_hex,
        recipient_lnurl="lnurl1ours",
    )
    assert isinstance(result, ZapInvalid) and result.reason is ZapRejection.LNURL_MISMATCH


def test_spec_example_receipt_is_rejected() -> None:
    """The NIP-57 example is illustrative: its description hash does not match its bolt11."""
    raw = VECTORS["zap_receipt_example"]
    receipt = Event(
        id=raw["id"],
        pubkey=raw["pubkey"],
        created_at=raw["created_at"],
        kind=raw["kind"],
        tags=tuple(tuple(t) for t in raw["tags"]),
        content=raw["content"],
        sig="00" * 64,
    )
    result = nip57.validate_zap_receipt(
        receipt, provider_pubkey=raw["pubkey"], recipient_pubkey=raw["tags"][0][1]
    )
    assert isinstance(result, ZapInvalid)
    assert result.reason is ZapRejection.DESCRIPTION_HASH_MISMATCH


def test_spec_example_request_shape() -> None:
    """The spec's zap request parses (shape) and passes appendix D once its amount matches."""
    raw = VECTORS["zap_request_example"]
    request = Event.parse_unverified(raw)
    info = nip57.check_zap_request(request, amount_msat=21_000)
    assert not isinstance(info, ZapInvalid)
    assert info.amount_msat == 21_000
    assert info.recipient_pubkey == raw["tags"][3][1]
    assert info.event_id == raw["tags"][4][1]
    assert info.relays == tuple(raw["tags"][0][1:])
    wrong = nip57.check_zap_request(request, amount_msat=1_000)
    assert isinstance(wrong, ZapInvalid) and wrong.reason is ZapRejection.AMOUNT_MISMATCH


def test_build_zap_request_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        nip57.build_zap_request(ZAPPER, recipient_pubkey="xx", amount_msat=1, relays=RELAYS)
    with pytest.raises(ValueError):
        nip57.build_zap_request(
            ZAPPER, recipient_pubkey=AGENT.public_hex, amount_msat=0, relays=RELAYS
        )
    with pytest.raises(ValueError):
        nip57.build_zap_request(ZAPPER, recipient_pubkey=AGENT.public_hex, amount_msat=1, relays=())


def test_spec_zap_request_lnurl_tag_decodes_to_the_recipient_url() -> None:
    """The lnurl tag an agent compares with its own (appendix F) is LUD-01 bech32."""
    from bot.wallets.lnurl import decode_lnurl, encode_lnurl, lightning_address_url

    lnurl_vectors = json.loads(
        (Path(__file__).parents[1] / "vectors" / "lnurl_examples.json").read_text()
    )
    example = lnurl_vectors["nip57_zap_request_lnurl_tag"]
    assert example["lnurl"] == VECTORS["zap_request_example"]["tags"][2][1]
    assert decode_lnurl(example["lnurl"]) == example["decoded_url"]
    assert encode_lnurl(example["decoded_url"]) == example["lnurl"]
    lud16 = lnurl_vectors["lud16_example"]
    assert lightning_address_url(lud16["address"]) == lud16["url"]
