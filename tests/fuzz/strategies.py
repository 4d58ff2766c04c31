"""Structure-aware hypothesis strategies for input from outside.

The inputs look like what a peer sends — relay frames, events, encrypted DMs, zap receipts,
NIP-47 payloads, NIP-11 documents, LNURL answers, configuration files — with hostile values
where a value goes: lone surrogates, control characters, integers of thousands of digits,
``NaN``, nesting a thousand deep, strings and documents beyond every cap. Valid structure
around the mutation (a correct signature, a correct encryption, an invoice that commits to the
mutated description) lets the input reach the inner layers instead of bouncing off the first
check.

Huge values are built by repetition (``unit * count``), so their size costs hypothesis nothing.
JSON documents are written by :func:`dump`, which places :class:`Raw` leaves verbatim: that is
how text ``json.dumps`` refuses to write (a 5,000-digit integer, ``NaN``, deep nesting) reaches
the parsers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from typing import Any

import bech32
from hypothesis import strategies as st

from bot.nostr import nip04, nip17, nip44, nip59
from bot.nostr.event import MAX_EVENT_JSON_BYTES, Event, sign_event
from bot.nostr.keys import Keys
from bot.wallets.bolt11 import MAX_INVOICE_CHARS, encode_invoice

# --- fixed keys -------------------------------------------------------------------------------
ME = Keys.from_hex("11" * 32)          # the agent
PEER = Keys.from_hex("22" * 32)        # someone writing to it
EPHEMERAL = Keys.from_hex("33" * 32)   # a gift wrap's one-time key
PROVIDER = Keys.from_hex("44" * 32)    # the agent's LNURL provider (signs zap receipts)
ZAPPER = Keys.from_hex("55" * 32)
WALLET = Keys.from_hex("66" * 32)      # an NWC wallet service
NODE_KEY = "77" * 32                   # a Lightning node signing invoices
NOW = 1_700_000_000


@dataclass(frozen=True, slots=True)
class Raw:
    """JSON text placed verbatim by :func:`dump`."""

    text: str


def dump(value: Any, ascii_only: bool = True) -> str:
    """JSON text of ``value`` with :class:`Raw` leaves verbatim. ``ascii_only`` writes
    non-ASCII as escapes (how a lone surrogate travels in a websocket text frame)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(v, ascii_only) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=ascii_only)}:"
                              f"{dump(v, ascii_only)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=ascii_only)


def repeated(unit: st.SearchStrategy[str], most: int) -> st.SearchStrategy[str]:
    """``unit * n`` for n up to ``most``: long strings at no generation cost."""
    return st.builds(lambda u, n: u * n, unit, st.integers(0, most))


# --- hostile leaves ---------------------------------------------------------------------------
NASTY_TEXT = [
    "\udfff", "\ud800", "a\udc00b", "\ud83d\ude00", "\x00", "\n", "\r\n", "\x1b[2J", "\u2028",
    "\u202e", "\x85", "\ufeff", "\\", '"', "\\u0000", "é", "𝔘", "auth-required: sign in",
    "rate-limited:", "duplicate:", "restricted: no", "error:", "invalid:", "pow:", "blocked:",
]
texts: st.SearchStrategy[str] = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(NASTY_TEXT),
    st.lists(st.sampled_from(NASTY_TEXT) | st.text(max_size=5), max_size=6).map("".join),
    repeated(st.sampled_from(["a", "é", "\udfff", "9", "[", " "]), 300_000),
)
"""Text with what a hostile peer puts in it: surrogates, controls, prefixes, huge runs."""

hex64 = st.one_of(st.binary(min_size=32, max_size=32).map(bytes.hex),
                  st.sampled_from(["", "0" * 64, "f" * 64, "F" * 64, "g" * 64, "0" * 63,
                                   "0" * 65, ME.public_hex, PEER.public_hex]))

raw_numbers = st.one_of(
    st.integers(1, 12_000).map(lambda n: Raw("9" * n)),
    st.integers(1, 12_000).map(lambda n: Raw("-" + "1" * n)),
    st.sampled_from([Raw(t) for t in ("NaN", "Infinity", "-Infinity", "-0", "1e999999",
                                      "1E-99999", "0.1e1", "00", "01", "1.", ".5", "+1",
                                      "0x10", "1_000")]),
    st.integers(1, 200_000).map(lambda n: Raw("0." + "1" * n)),
)
raw_structures = st.one_of(
    st.integers(1, 120_000).map(lambda n: Raw("[" * n + "]" * n)),
    st.integers(1, 60_000).map(lambda n: Raw('{"a":' * n + "1" + "}" * n)),
    st.integers(1, 5_000).map(lambda n: Raw("[" * n)),
    st.sampled_from([Raw(t) for t in ('"\\udfff"', '"\\ud800\\udc00"', '"\\uD834"',
                                      '"\\ud800\\u0041"', '"\\x41"', '"\\u00"', "'single'",
                                      '"\t"', "[1,]", "{,}", '{"a" 1}', "tru", "nul", "",
                                      '"\\u0000"', "[][]", '{"a":1,"a":2}')]),
    st.integers(1, 300_000).map(lambda n: Raw('"' + "x" * n + '"')),
)
scalars = st.one_of(
    st.none(), st.booleans(), texts,
    st.integers(), st.sampled_from([0, -1, 2**53, 2**63, 2**64, -(2**63), 10**20, 10**40]),
    st.floats(allow_nan=False, allow_infinity=False),
    raw_numbers, raw_structures,
)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8) | st.sampled_from(NASTY_TEXT), children, max_size=5),
    max_leaves=15,
)
"""Any JSON value, hostile at every leaf."""


@st.composite
def edited(draw: st.DrawFn, text: str) -> str:
    """``text`` after a few edits: replace, insert, delete, truncate, repeat a slice (up to
    about 2 MB, beyond every cap)."""
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "repeat"]))
        pos = draw(st.integers(0, max(len(text) - 1, 0)))
        if op == "replace" and text:
            new = draw(st.characters() | st.sampled_from(list('"[]{},:\\0-e')))
            text = text[:pos] + new + text[pos + 1:]
        elif op == "insert":
            text = text[:pos] + draw(st.sampled_from(list('"[]{},:\\0') + NASTY_TEXT)) \
                + text[pos:]
        elif op == "delete" and text:
            text = text[:pos] + text[pos + 1:]
        elif op == "truncate":
            text = text[:pos]
        elif op == "repeat" and text:
            end = draw(st.integers(pos, min(len(text), pos + 64)))
            times = draw(st.integers(1, 2_000_000 // max(end - pos, 1)))
            text = text[:pos] + text[pos:end] * times + text[pos:]
    return text


@st.composite
def mutated_document(draw: st.DrawFn, base: Any) -> str:
    """A JSON document derived from ``base``: a field replaced, removed or added; the whole
    thing replaced; raw text edits; or over-size padding."""
    how = draw(st.sampled_from(["field", "drop", "add", "whole", "edit", "pad", "same"]))
    value: Any = json.loads(json.dumps(base))
    if how == "whole":
        value = draw(json_values)
    elif isinstance(value, dict) and value and how in ("field", "drop"):
        key = draw(st.sampled_from(sorted(value)))
        if how == "drop":
            del value[key]
        else:
            value[key] = _mutate_value(draw, value[key])
    elif isinstance(value, list) and value and how == "field":
        index = draw(st.integers(0, len(value) - 1))
        value[index] = _mutate_value(draw, value[index])
    elif isinstance(value, dict) and how == "add":
        value[draw(st.text(max_size=10) | st.sampled_from(NASTY_TEXT))] = draw(json_values)
    text = dump(value, draw(st.booleans()))
    if how == "edit":
        text = draw(edited(text))
    elif how == "pad":
        text = text[:-1] + " " * draw(st.integers(0, 1_200_000)) + text[-1:]
    return text


def _mutate_value(draw: st.DrawFn, old: Any) -> Any:
    """A hostile replacement for one value, often of the same shape as the old one."""
    if isinstance(old, list) and old and draw(st.booleans()):
        out = list(old)
        index = draw(st.integers(0, len(out) - 1))
        out[index] = _mutate_value(draw, out[index])
        return out
    if isinstance(old, dict) and old and draw(st.booleans()):
        out_d = dict(old)
        key = draw(st.sampled_from(sorted(out_d)))
        out_d[key] = _mutate_value(draw, out_d[key])
        return out_d
    return draw(json_values)


# --- events -----------------------------------------------------------------------------------
tag_lists = st.lists(
    st.lists(st.sampled_from(["p", "e", "P", "a", "k", "bolt11", "description", "preimage",
                              "amount", "relays", "lnurl", "r", "relay", "expiration",
                              "encryption", "challenge", ""]) | texts,
             min_size=0, max_size=4),
    max_size=8,
)


def signable(text: str) -> str:
    """``text`` with what no signature can cover (lone surrogates) replaced."""
    return text.encode("utf-8", "replace").decode("utf-8")


def sign_anyway(keys: Keys, kind: int, content: str, tags: list[list[str]],
                created_at: int = NOW) -> Event:
    """A signed event of these parts, or of their signable version."""
    try:
        return sign_event(keys, kind, content, tags, created_at)
    except ValueError:
        return sign_event(keys, kind, signable(content),
                          [[signable(x) for x in tag] for tag in tags], created_at)


def signed(keys: Keys, kind: int, content: str, tags: list[list[str]],
           created_at: int = NOW) -> dict[str, Any]:
    """A correctly signed event as a dict; text no signature can cover (a lone surrogate)
    gets a well-formed but wrong id and signature instead."""
    try:
        return sign_event(keys, kind, content, tags, created_at).to_dict()
    except ValueError:
        return {"id": "ab" * 32, "pubkey": keys.public_hex, "created_at": created_at,
                "kind": kind, "tags": tags, "content": content, "sig": "cd" * 64}


BASE_EVENTS = [
    sign_event(PEER, 1, "hello", [["p", ME.public_hex]], NOW),
    sign_event(PEER, 4, nip04.encrypt(PEER.secret_hex, ME.public_hex, "hi"),
               [["p", ME.public_hex]], NOW),
    nip59.gift_wrap(
        nip59.seal(PEER, nip17.chat_rumor(PEER, ME.public_hex, "wrapped", created_at=NOW),
                   ME.public_hex, NOW),
        ME.public_hex, NOW, EPHEMERAL),
]


@st.composite
def event_dicts(draw: st.DrawFn) -> Any:
    """An event object: valid, signed around hostile content and tags, or a mutated valid one."""
    how = draw(st.sampled_from(["valid", "valid", "resigned", "resigned", "mutated", "json"]))
    base = draw(st.sampled_from(BASE_EVENTS))
    if how == "valid":
        return base.to_dict()
    if how == "resigned":
        keys = draw(st.sampled_from([PEER, EPHEMERAL, ME]))
        kind = draw(st.sampled_from([1, 4, 13, 1059, 9735, 23195, 0, 65535]))
        return signed(keys, kind, draw(texts), draw(tag_lists),
                      draw(st.sampled_from([NOW, 0, 2**53 - 1])))
    if how == "mutated":
        value = base.to_dict()
        key = draw(st.sampled_from(sorted(value)))
        value[key] = _mutate_value(draw, value[key])
        return value
    return draw(json_values)


@st.composite
def event_texts(draw: st.DrawFn) -> tuple[str | bytes, Event | None]:
    """Event JSON as a relay or a decrypted layer carries it (bytes included), and the signed
    event it was derived from by mutation (None when it was built some other way): such a
    mutation may only pass if it changed nothing the signature covers."""
    if draw(st.booleans()):
        base = draw(st.sampled_from(BASE_EVENTS))
        text, origin = draw(mutated_document(base.to_dict())), base
    else:
        text, origin = dump(draw(event_dicts())), None
    how = draw(st.sampled_from(["text", "text", "bytes", "junk"]))
    if how == "bytes":
        return text.encode("utf-8", "surrogatepass"), origin
    if how == "junk":
        return draw(st.binary(max_size=200)), None
    return text, origin


# --- relay frames -----------------------------------------------------------------------------
SUB_ID = "s"


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any],
           in_ten: int = 7) -> st.SearchStrategy[Any]:
    """``good`` ``in_ten`` times out of ten, else ``bad``: enough well-formed parts for an
    input to get past the outer checks, enough hostile ones to test them."""
    return st.integers(0, 9).flatmap(lambda n: good if n < in_ten else bad)


sub_ids = mostly(st.just(SUB_ID), texts | json_values)
messages = mostly(texts, json_values)


@st.composite
def relay_frames(draw: st.DrawFn) -> str | bytes:
    """A frame from a relay: every message type with hostile arguments, raw edits, bytes."""
    kind = draw(mostly(st.sampled_from(["EVENT", "EVENT", "OK", "EOSE", "CLOSED", "NOTICE",
                                        "AUTH", "COUNT"]),
                       st.sampled_from(["REQ", "event", "", "EVENT "]) | texts, 8))
    if kind == "EVENT":
        args: list[Any] = [draw(sub_ids), draw(event_dicts())]
    elif kind == "OK":
        args = [draw(hex64 | texts), draw(st.booleans() | json_values), draw(messages)]
    elif kind in ("EOSE", "COUNT"):
        args = [draw(sub_ids)]
    elif kind == "CLOSED":
        args = [draw(sub_ids), draw(messages)]
    elif kind == "NOTICE":
        args = [draw(messages)]
    elif kind == "AUTH":
        args = [draw(texts | json_values)]
    else:
        args = draw(st.lists(json_values, max_size=3))
    args = args[: draw(st.integers(0, len(args)))] if draw(st.integers(0, 9)) == 0 else args
    frame = dump([kind, *args], draw(st.booleans()))
    how = draw(mostly(st.sampled_from(["as is", "bytes"]),
                      st.sampled_from(["edit", "junk", "pad"]), 7))
    if how == "edit":
        frame = draw(edited(frame))
    elif how == "bytes":
        return frame.encode("utf-8", "surrogatepass")
    elif how == "junk":
        return draw(st.binary(max_size=100) | st.text(max_size=100))
    elif how == "pad":
        frame = frame[:-1] + " " * draw(st.integers(0, 1_100_000)) + "]"
    return frame


# --- DM layers (valid crypto around hostile content) -----------------------------------------
ME_PEER_CONV = nip44.conversation_key(ME.secret_hex, PEER.public_hex)
PEER_ME_CONV = nip44.conversation_key(PEER.secret_hex, ME.public_hex)
WRAP_CONV = nip44.conversation_key(EPHEMERAL.secret_hex, ME.public_hex)
plaintexts = texts.filter(bool)


@st.composite
def nip04_dms(draw: st.DrawFn) -> tuple[Event, str | None]:
    """A kind-4 event signed by PEER to ME: a correct encryption of hostile text, or hostile
    ciphertext. Returns the event and the plaintext it must decrypt to (None: unknown)."""
    tags = [["p", ME.public_hex]] if draw(st.integers(0, 9)) else draw(tag_lists)
    expected: str | None = None
    if draw(st.booleans()):
        text = draw(plaintexts)
        try:
            content = nip04.encrypt(PEER.secret_hex, ME.public_hex, text)
            expected = text
        except ValueError:  # text no encryption can carry
            content = text
    else:
        good = nip04.encrypt(PEER.secret_hex, ME.public_hex, "hello")
        iv = good.split("?iv=")[1]
        content = draw(st.one_of(edited(good), texts,
                                 repeated(st.just("QUFB"), 400_000).map(lambda b: f"{b}?iv={iv}")))
    event = sign_anyway(PEER, 4, content, tags)
    if event.content != content or len(content) > nip04.MAX_CONTENT_CHARS:
        expected = None
    return event, expected if ["p", ME.public_hex] in [list(t) for t in event.tags] else None


REFUSED = "\x00refused"
"""An expected plaintext meaning: this payload must be refused."""


@st.composite
def nip44_payloads(draw: st.DrawFn) -> tuple[str, str | None]:
    """A NIP-44 payload for ME_PEER_CONV and what it must decrypt to: a valid MAC around
    hostile padded plaintext (bad length prefixes, bad padding, bad UTF-8) so the inner checks
    run, hostile base64, or a valid payload with one byte changed (which must be refused:
    expected :data:`REFUSED`). Expected None: either outcome."""
    how = draw(st.sampled_from(["padded", "valid", "edit", "text", "flip"]))
    if how == "valid":
        text = draw(plaintexts)
        try:
            payload = nip44.encrypt(text, PEER_ME_CONV, allow_extended=True)
        except ValueError:
            return text, None
        return payload, text if len(payload) <= nip44.MAX_PAYLOAD_CHARS else None
    if how == "padded":
        body = draw(st.binary(max_size=300) | repeated(st.just("\xff"), 70_000).map(
            lambda s: s.encode("latin-1")))
        prefix = draw(st.sampled_from([min(len(body), 65535).to_bytes(2, "big"), b"\x00\x00",
                                       b"\x00\x00" + len(body).to_bytes(4, "big"), b"\xff\xff",
                                       b"", b"\x00"]))
        padded = prefix + body + bytes(draw(st.integers(0, 64)))
        nonce = draw(st.binary(min_size=32, max_size=32))
        chacha_key, chacha_nonce, hmac_key = nip44.message_keys(PEER_ME_CONV, nonce)
        ciphertext = nip44._chacha20(chacha_key, chacha_nonce, padded)
        mac = nip44._hmac_aad(hmac_key, ciphertext, nonce)
        version = draw(st.sampled_from([2, 2, 2, 1, 0, 255]))
        return base64.b64encode(bytes([version]) + nonce + ciphertext + mac).decode(), None
    good = nip44.encrypt("fuzz me", PEER_ME_CONV)
    if how == "flip":
        raw = bytearray(base64.b64decode(good))
        position = draw(st.integers(0, len(raw) - 1))
        byte = draw(st.integers(0, 255))
        changed = raw[position] != byte
        raw[position] = byte
        return base64.b64encode(bytes(raw)).decode(), REFUSED if changed else "fuzz me"
    if how == "edit":
        return draw(edited(good)), None
    return draw(texts), None


@st.composite
def gift_wraps_with_hostile_seal(draw: st.DrawFn) -> Event:
    """A correct gift wrap (kind 1059 by EPHEMERAL to ME) whose encrypted seal is hostile."""
    seal = nip59.seal(PEER, nip17.chat_rumor(PEER, ME.public_hex, "inner", created_at=NOW),
                      ME.public_hex, NOW)
    seal_text = draw(st.one_of(mutated_document(seal.to_dict()),
                               event_dicts().map(lambda v: dump(v)),
                               st.just(seal.to_json())))
    return _wrap_text(seal_text)


def _wrap_text(seal_text: str) -> Event:
    try:
        content = nip44.encrypt(seal_text, WRAP_CONV, allow_extended=True)
    except ValueError:
        content = seal_text
    return sign_anyway(EPHEMERAL, 1059, content, [["p", ME.public_hex]])


RUMOR = nip17.chat_rumor(PEER, ME.public_hex, "the rumor", created_at=NOW)


@st.composite
def gift_wraps_with_hostile_rumor(draw: st.DrawFn) -> tuple[Event, str | None]:
    """A correct wrap around a correct seal signed by PEER whose encrypted rumor is hostile.
    Returns the wrap and the text it must open to (None: unknown)."""
    how = draw(st.sampled_from(["document", "resigned", "same"]))
    expected: str | None = None
    if how == "document":
        rumor_text = draw(mutated_document(RUMOR.to_dict()))
    elif how == "resigned":
        content, tags = draw(texts), draw(tag_lists)
        kind = draw(st.sampled_from([14, 14, 1, 15]))
        try:
            rumor = nip59.Rumor.create(PEER.public_hex, kind, content, tags, NOW)
            rumor_text = rumor.to_json()
            expected = content if kind == 14 else None
        except ValueError:
            rumor_text = dump({"pubkey": PEER.public_hex, "created_at": NOW, "kind": kind,
                               "tags": tags, "content": content})
    else:
        rumor_text, expected = RUMOR.to_json(), RUMOR.content
    try:
        seal_content = nip44.encrypt(rumor_text, PEER_ME_CONV, allow_extended=True)
    except ValueError:
        seal_content, expected = rumor_text, None
    seal = sign_anyway(PEER, 13, seal_content, [])
    wrap = _wrap_text(seal.to_json())
    within_caps = (len(rumor_text.encode("utf-8", "surrogatepass")) <= MAX_EVENT_JSON_BYTES
                   and len(seal.to_json().encode()) <= MAX_EVENT_JSON_BYTES
                   and len(wrap.content) <= nip44.MAX_PAYLOAD_CHARS)
    if seal.content != seal_content or not within_caps:
        expected = None
    return wrap, expected


# --- bolt11 and zaps --------------------------------------------------------------------------
def invoice_for(description: str, amount_msat: int | None = 21_000,
                network: str = "bc") -> str:
    """A correctly signed bolt11 committing to sha256(description)."""
    return encode_invoice(
        network=network, amount_msat=amount_msat, payment_hash=os.urandom(32).hex(),
        payment_secret=os.urandom(32).hex(), created_at=NOW, expiry_s=600,
        node_key_hex=NODE_KEY,
        description_hash=hashlib.sha256(description.encode("utf-8", "surrogatepass")).hexdigest())


@cache
def long_bolt11(length: int) -> str:
    """A bolt11-shaped string of ``length`` characters with a valid bech32 checksum (unknown
    tagged fields, a signature-sized tail): the slow input of issue 12, finding 5."""
    hrp = "lnbc10u"
    budget = length - len(hrp) - 1 - 6 - 7 - 104
    words = [0] * 7
    while budget > 3:
        size = min(1023, budget - 3)
        words += [0, size >> 5, size & 31] + [1] * size
        budget -= 3 + size
    words += [3] * (104 + max(budget, 0))
    return str(bech32.bech32_encode(hrp, words))


GOOD_INVOICE = invoice_for("fixed")
bolt11_texts = st.one_of(
    st.just(GOOD_INVOICE),
    edited(GOOD_INVOICE),
    st.sampled_from([MAX_INVOICE_CHARS - 200, MAX_INVOICE_CHARS + 1, 100_000]).map(long_bolt11),
    texts,
    st.sampled_from(["lnbc1", "lnbc", "ln", "LIGHTNING:" + GOOD_INVOICE.upper(),
                     "lnbc1pvjluezpp5", "lnbc2500u1" + "q" * 500, "lnbc10p1" + "q" * 200,
                     "lnbcrt1" + "x" * 50, "lnsb10u1" + "q" * 300]),
)


@st.composite
def zap_receipts(draw: st.DrawFn) -> Event:
    """A kind-9735 receipt signed by PROVIDER: a description (a zap request, valid or mutated)
    with an invoice that commits to it, then hostile tags (duplicates, foreign p, bad bolt11,
    bad preimage)."""
    request = sign_event(ZAPPER, 9734, draw(st.sampled_from(["", "thanks", "\u202e"])),
                         [["relays", "wss://r.example"], ["amount", "21000"],
                          ["p", ME.public_hex]], NOW)
    how = draw(st.sampled_from(["valid", "request", "document", "tags", "bolt11"]))
    description = request.to_json()
    if how == "request":
        mutated = _mutate_value(draw, [list(t) for t in request.tags])
        request_tags = mutated if isinstance(mutated, list) and all(
            isinstance(t, list) and all(isinstance(x, str) for x in t) for t in mutated) \
            else draw(tag_lists)
        description = dump(signed(ZAPPER, draw(st.sampled_from([9734, 9734, 1])),
                                  draw(texts), request_tags))
    elif how == "document":
        description = draw(mutated_document(request.to_dict()))
    amount = draw(st.sampled_from([21_000, 21_000, 1_000, None]))
    bolt11 = invoice_for(description, amount) if how != "bolt11" else draw(bolt11_texts)
    tags: list[list[str]] = [["p", ME.public_hex], ["P", ZAPPER.public_hex],
                             ["bolt11", bolt11], ["description", description]]
    if how == "tags":
        extra = draw(st.lists(st.sampled_from(["p", "P", "bolt11", "description", "preimage",
                                               "e"]), max_size=3))
        tags += [[name, draw(texts | hex64)] for name in extra]
        if draw(st.booleans()):
            tags = [t for t in tags if t[0] != draw(st.sampled_from(["p", "bolt11"]))]
    return sign_anyway(PROVIDER, 9735, "", tags)


# --- NIP-47 -----------------------------------------------------------------------------------
TRANSACTION = {"type": "incoming", "payment_hash": "ab" * 32, "amount": 21_000,
               "fees_paid": 0, "state": "settled", "invoice": GOOD_INVOICE,
               "preimage": "cd" * 32, "created_at": NOW, "expires_at": NOW + 600,
               "settled_at": NOW + 5, "description": "d", "description_hash": "ef" * 32}
NIP47_RESPONSES = [
    {"result_type": "get_balance", "error": None, "result": {"balance": 21_000}},
    {"result_type": "pay_invoice", "error": None,
     "result": {"preimage": "cd" * 32, "fees_paid": 10}},
    {"result_type": "make_invoice", "error": None, "result": TRANSACTION},
    {"result_type": "pay_invoice", "error": {"code": "PAYMENT_FAILED", "message": "no route"},
     "result": None},
    {"result_type": "list_transactions", "error": None,
     "result": {"transactions": [TRANSACTION, TRANSACTION]}},
]
NIP47_NOTIFICATIONS = [{"notification_type": "payment_received", "notification": TRANSACTION}]
NIP47_REQUESTS = [{"method": "pay_invoice", "params": {"invoice": GOOD_INVOICE}},
                  {"method": "make_invoice", "params": {"amount": 1000, "expiry": 600}}]
nip47_responses = st.sampled_from(NIP47_RESPONSES).flatmap(mutated_document)
nip47_notifications = st.sampled_from(NIP47_NOTIFICATIONS).flatmap(mutated_document)
nip47_requests = st.sampled_from(NIP47_REQUESTS).flatmap(mutated_document)


@st.composite
def nwc_uris(draw: st.DrawFn) -> str:
    """A connection URI: the right shape with hostile relays, secrets, pubkeys, or edited."""
    pubkey = draw(mostly(st.just(WALLET.public_hex), hex64 | texts))
    relays = draw(st.lists(mostly(st.sampled_from(["wss://relay.example", "ws://127.0.0.1:7000"]),
                                  st.sampled_from(["wss://[", "wss://[]", "wss://[::1", "ws://",
                                                   "wss://:99999", "https://r.example",
                                                   "wss://r.example:x", "wss://%zz"]) | texts),
                          max_size=3))
    secret = draw(mostly(st.just(ME.secret_hex), hex64 | texts))
    query = "&".join([*(f"relay={r}" for r in relays), f"secret={secret}"])
    uri = f"{draw(st.sampled_from(['nostr+walletconnect://', 'nostr+walletconnect:']))}" \
          f"{pubkey}?{query}"
    return str(draw(mostly(st.just(uri), edited(uri), 8)))


# --- NIP-90 -----------------------------------------------------------------------------------
numbers_as_text = st.one_of(st.integers(0, 10**20).map(str),
                            st.sampled_from(["²", "١٢٣", "1e3", "-1", "0x10", "", " 1", "1_0"]),
                            st.integers(1, 5000).map(lambda n: "9" * n))
job_tags = st.lists(st.one_of(
    st.tuples(st.just("i"), texts, st.sampled_from(["text", "event", "url", "job", "", "x"]),
              st.sampled_from(["", "wss://r.example"]), texts).map(list)
    .flatmap(lambda tag: st.integers(1, 5).map(lambda n: tag[:n])),
    st.tuples(st.just("param"), mostly(st.just("max_tokens"), texts, 5),
              numbers_as_text | texts).map(list),
    st.tuples(st.just("bid"), numbers_as_text).map(list),
    st.lists(st.sampled_from(["wss://r.example", "ws://x", "http://y"]) | texts, max_size=3)
    .map(lambda urls: ["relays", *urls]),
    st.sampled_from([["p", ME.public_hex], ["p", PEER.public_hex], ["p", "zz"], ["encrypted"],
                     ["i"], ["bid"], []]),
    tag_lists.map(lambda ts: ts[0] if ts else []),
), max_size=10)


@st.composite
def job_requests(draw: st.DrawFn) -> Event:
    """A kind-5050 request signed by PEER: hostile clear tags, or ``encrypted`` with a correct
    NIP-04 or NIP-44 encryption (to ME) of hostile tag JSON."""
    tags = [*draw(mostly(st.just([["i", "what is a zap?", "text"]]), st.just([]), 7)),
            *(list(t) for t in draw(job_tags))]
    content = ""
    if draw(st.booleans()):
        tags += [["p", ME.public_hex], ["encrypted"]]
        hidden = draw(mostly(job_tags.map(lambda ts: dump(ts)),
                             json_values.map(dump) | texts, 7))
        scheme = draw(st.sampled_from(["nip04", "nip44", "junk"]))
        try:
            if scheme == "nip04":
                content = nip04.encrypt(PEER.secret_hex, ME.public_hex, hidden)
            elif scheme == "nip44":
                content = nip44.encrypt(hidden, PEER_ME_CONV, allow_extended=True)
            else:
                content = hidden
        except ValueError:
            content = hidden
    kind = draw(mostly(st.just(5050), st.sampled_from([5, 5000, 6050]), 9))
    return sign_anyway(PEER, kind, content, tags)


# --- NIP-11 -----------------------------------------------------------------------------------
NIP11 = {"name": "relay", "description": "d", "pubkey": "ab" * 32, "software": "s",
         "version": "1", "supported_nips": [1, 11, 42],
         "limitation": {"max_message_length": 65536, "auth_required": False,
                        "max_subscriptions": 20, "created_at_lower_limit": 0},
         "fees": {"admission": [{"amount": 1000, "unit": "msats"}]}}
nip11_documents = st.one_of(
    mutated_document(NIP11).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=100),
)


# --- LNURL ------------------------------------------------------------------------------------
PAY_REQUEST = {"tag": "payRequest", "callback": "https://pay.example/cb", "minSendable": 1000,
               "maxSendable": 10**11, "metadata": '[["text/plain","timmy"]]',  # = METADATA
               "commentAllowed": 100, "allowsNostr": True, "nostrPubkey": PROVIDER.public_hex}


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    body: bytes


@cache
def big_body(size: int) -> bytes:
    """A valid JSON array of about ``size`` bytes."""
    return b"[" + b"1," * (size // 2) + b"1]"


big_bodies = st.sampled_from([64 << 10, 256 << 10, 1 << 20, 8 << 20]).flatmap(
    lambda cap: st.sampled_from([big_body(cap - 16), big_body(cap + 16)]))
"""JSON bodies just under and just over each cap (NIP-11 and NIP-47, LNURL, LNbits, AI)."""


def http_answers(base: Any) -> st.SearchStrategy[HttpAnswer]:
    """An HTTP answer built around ``base``: often ``base`` itself, else hostile JSON bodies,
    hostile statuses, sizes beyond the caps."""
    return st.builds(
        HttpAnswer,
        mostly(st.just(200), st.sampled_from([404, 500, 302, 429, 999, 100])),
        mostly(st.just(dump(base).encode()), st.one_of(
            mutated_document(base).map(lambda t: t.encode("utf-8", "surrogatepass")),
            st.binary(max_size=64), big_bodies), 4),
    )


METADATA = '[["text/plain","timmy"]]'
CALLBACK_INVOICES = [invoice_for(METADATA, 21_000), invoice_for("other", 21_000),
                     invoice_for(METADATA, 20_000), invoice_for(METADATA, 21_000, "tb"),
                     invoice_for(METADATA, None)]
callback_answers = mostly(st.just(CALLBACK_INVOICES[0]),
                          st.sampled_from(CALLBACK_INVOICES[1:]) | bolt11_texts, 5).flatmap(
    lambda pr: http_answers({"pr": pr, "routes": [], "verify": "https://pay.example/v/x"}))


verify_answers = http_answers({"status": "OK", "settled": True, "preimage": "cd" * 32,
                               "pr": GOOD_INVOICE})


# --- DM commands ------------------------------------------------------------------------------
COMMAND_WORDS = ["help", "balance", "pool", "status", "estimate", "topup", "refund", "admin",
                 "/help", "TOPUP", "Refund", "credit", "limit", "pause", "resume", "limits",
                 "none", "daily_free_msat", "daily_free_jobs", "pool_daily_cap_msat"]
command_words = st.one_of(
    st.sampled_from(COMMAND_WORDS), texts,
    st.integers(-5, 10**6).map(str), st.integers(1, 5000).map(lambda n: "9" * n),
    st.sampled_from(["٣", "²", "1e3", "0x10", "1_000", "+1", "-1", "00001", "١٢٣"]),
    bolt11_texts,
)
command_texts = st.lists(command_words, max_size=6).flatmap(
    lambda words: st.sampled_from([" ", "\n", "\t", "\u3000", "  "]).map(
        lambda sep: sep.join(words)))


# --- NIP-19 -----------------------------------------------------------------------------------
def bech32_of(hrp: str, payload: bytes) -> str:
    """``payload`` under ``hrp`` with a valid checksum, whatever it holds."""
    return str(bech32.bech32_encode(hrp, bech32.convertbits(payload, 8, 5) or []))


tlv_payloads = st.lists(
    st.tuples(st.integers(0, 4),
              st.binary(max_size=40) | st.sampled_from([bytes(32), b"\xff" * 4])),
    max_size=5,
).map(lambda items: b"".join(bytes([t, len(v)]) + v for t, v in items))
nip19_texts = st.one_of(
    st.builds(bech32_of, st.sampled_from(["npub", "nsec", "note", "nprofile", "nevent", "naddr",
                                          "nrelay", "lnurl", ""]),
              st.binary(min_size=32, max_size=32) | tlv_payloads | st.binary(max_size=3000)),
    st.builds(bech32_of, st.just("npub"), st.just(bytes.fromhex(PEER.public_hex))).flatmap(
        lambda good: mostly(st.just(good), edited(good), 3)),
    texts,
)


# --- configuration ----------------------------------------------------------------------------
TOML_SECTIONS: dict[str, list[str]] = {
    "agent": ["db", "relays", "key_file", "admins"],
    "pricing": ["input_msat", "output_msat", "fixed_fee_msat", "per_tokens"],
    "limits": ["daily_free_msat", "daily_free_jobs", "pool_daily_cap_msat"],
    "ai": ["base_url", "model", "api_key_file", "api_key_env", "max_tokens", "stream",
           "temperature", "read_timeout_s"],
    "ai.local": ["max_tokens", "n_ctx", "threads", "model_path", "temperature", "seed"],
    "wallet": ["backend", "network", "max_fee_base_msat", "max_fee_ppm",
               "lnurl_insecure_hosts", "allow_dev"],
    "wallet.lnbits": ["url", "invoice_key_env", "invoice_key_file", "admin_key_file"],
    "wallet.nwc": ["uri_env", "uri_file", "request_timeout_s"],
    "wallet.lightning_address": ["address", "verify_url_template", "poll_interval_s"],
    "service": ["concurrency", "invoice_expiry_s", "work_timeout_s", "history_turns"],
    "profile": ["name", "lud16", "about"],
    "relay": ["url", "read", "write"],
}
toml_values = st.one_of(
    st.integers().map(str), st.integers(1, 6000).map(lambda n: "9" * n),
    st.sampled_from(["true", "false", "nan", "inf", "-inf", "1e400", "0x10", "0o7", "1_000",
                     "1979-05-27T07:32:00Z", "07:32:00", "[]", "{}", "''", '""', '"~"',
                     '"~nosuchuser-fuzz/x"', '"a\\u0000b"', '"\\udfff"', '"bc"', '"dev"',
                     '"lnbits"', '"nwc"', '"wss://relay.example"', '"ws://[::1]:7000"',
                     '"wss://["', '"https://x.example"', '"timmy@example.com"']),
    texts.map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: "{a = " * n + "1" + "}" * n),
    st.lists(st.sampled_from(['"npub1x"', '"' + "ab" * 32 + '"', "1", '"x"']),
             max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
)


RELAYS_TOML = ('[[relay]]\nurl = "wss://a.example"\n\n'
               '[[relay]]\nurl = "wss://b.example"\nread = false\n')
relay_lists = mostly(st.just(RELAYS_TOML), edited(RELAYS_TOML), 3)


@st.composite
def toml_documents(draw: st.DrawFn, relays: bool = False) -> str:
    """A TOML file: known and unknown sections and keys with hostile values, raw edits."""
    if relays and draw(st.booleans()):
        return str(draw(relay_lists))
    lines: list[str] = []
    names = ["relay"] if relays else [s for s in TOML_SECTIONS if s != "relay"]
    for _ in range(draw(st.integers(0, 5))):
        section = draw(st.sampled_from(names) | st.text(max_size=6))
        header = f"[[{section}]]" if section == "relay" else f"[{section}]"
        lines.append(draw(st.sampled_from([header, header, f"[{section}"])))
        for _ in range(draw(st.integers(0, 5))):
            key = draw(st.sampled_from(TOML_SECTIONS.get(section, ["x"])) | st.text(max_size=6))
            lines.append(f"{key} = {draw(toml_values)}")
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 4)) == 0:
        text = draw(edited(text))
    return text
