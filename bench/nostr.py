"""Nostr protocol benchmark: events per second on this machine, beside raw coincurve rates.

Run: ``.venv/bin/python bench/nostr.py [--seconds S]``. Each figure runs for S seconds
(default 2) over prepared inputs from many different senders:

- ``verify``: ``Event.from_dict`` (shape checks, id recomputed, BIP-340 signature verified)
- ``nip04_decrypt``: an incoming kind-4 DM opened (ECDH + AES-CBC), verification excluded
- ``nip17_unwrap``: an incoming gift wrap verified and opened down to its kind-14 rumor (wrap
  signature, two ECDH + NIP-44 layers, seal signature)
- ``nip17_wrap_reply``: a reply wrapped twice (recipient + self copy: two seals, two wraps,
  four signatures, four NIP-44 encryptions)
- ``raw_verify`` / ``raw_sign``: coincurve's Schnorr verify and sign alone, the ceiling

The last line is: ``unwrap_per_s=N wrap_reply_per_s=M raw_verify_per_s=V raw_sign_per_s=S``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import coincurve

from bot.nostr import nip04, nip17
from bot.nostr.event import Event, sign_event
from bot.nostr.keys import Keys

T = TypeVar("T")
SENDERS = 64


def rate(label: str, items: Sequence[T], work: Callable[[T], object], seconds: float) -> float:
    n = 0
    cycle = itertools.cycle(items)
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(16):
            work(next(cycle))
        n += 16
        now = time.perf_counter()
        if now >= deadline:
            break
    per_s = n / (now - start)
    print(f"{label:<20} {per_s:>10.0f} /s   ({n} in {now - start:.2f} s)")
    return per_s


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    seconds: float = args.seconds

    agent = Keys.generate()
    senders = [Keys.generate() for _ in range(SENDERS)]
    text = "What is the Lightning Network, in two sentences? ⚡"
    notes: list[dict[str, Any]] = [sign_event(k, 1, text).to_dict() for k in senders]
    dms = [sign_event(k, 4, nip04.encrypt(k.secret_hex, agent.public_hex, text),
                      [["p", agent.public_hex]]) for k in senders]
    wraps = [nip17.private_message(k, agent.public_hex, text).to_recipient.to_dict()
             for k in senders]
    raw_keys = [coincurve.PrivateKey() for _ in range(SENDERS)]
    raw_msgs = [os.urandom(32) for _ in range(SENDERS)]
    raw_sigs = [(k.public_key_xonly, m, k.sign_schnorr(m)) for k, m in zip(raw_keys, raw_msgs,
                                                                          strict=True)]

    def check_raw(item: tuple[coincurve.PublicKeyXOnly, bytes, bytes]) -> object:
        pub, msg, sig = item
        if not pub.verify(sig, msg):
            raise AssertionError("raw verify failed")
        return None

    def unwrap(raw: dict[str, Any]) -> object:
        return nip17.receive(agent, Event.from_dict(raw))

    answer = "It is a network of payment channels on top of Bitcoin. Payments are instant."
    print(f"nostr benchmark: {seconds:.1f} s per figure, {SENDERS} senders")
    verify = rate("verify", notes, Event.from_dict, seconds)
    nip04_rate = rate("nip04_decrypt", dms,
                      lambda e: nip04.decrypt(agent.secret_hex, e.pubkey, e.content), seconds)
    unwrap_rate = rate("nip17_unwrap", wraps, unwrap, seconds)
    wrap_rate = rate("nip17_wrap_reply", senders,
                     lambda k: nip17.private_message(agent, k.public_hex, answer), seconds)
    raw_verify = rate("raw_verify", raw_sigs, check_raw, seconds)
    raw_sign = rate("raw_sign", list(zip(raw_keys, raw_msgs, strict=True)),
                    lambda km: km[0].sign_schnorr(km[1]), seconds)
    print(f"verify is {verify / raw_verify:.0%} of raw verify; a reply wrap costs "
          f"{raw_sign / wrap_rate:.1f} raw signatures; nip04 decrypt {nip04_rate:.0f}/s")
    print(f"unwrap_per_s={unwrap_rate:.0f} wrap_reply_per_s={wrap_rate:.0f} "
          f"raw_verify_per_s={raw_verify:.0f} raw_sign_per_s={raw_sign:.0f}")


if __name__ == "__main__":
    main()
