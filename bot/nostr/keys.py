"""secp256k1 key pairs for Nostr: hex and nsec forms, BIP-340 Schnorr signing.

bech32 (npub/nsec) goes through pynostr's codec; derivation and signing call coincurve
directly (what pynostr's ``PrivateKey`` does) on a key object built once per ``Keys``.
The secret never appears in ``repr`` or in an error message.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import coincurve

from bot.nostr import nip19, nip44
from bot.nostr.errors import InvalidKey
from bot.nostr.hexutil import is_hex

MAX_CONVERSATIONS = 4096


@dataclass(frozen=True, slots=True)
class Keys:
    """A key pair. ``secret_hex`` is hidden from ``repr``; compare by public key."""

    secret_hex: str = field(repr=False, compare=False)
    public_hex: str
    _signer: coincurve.PrivateKey = field(repr=False, compare=False)
    _conversations: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def generate(cls) -> Keys:
        return cls.from_hex(secrets.token_bytes(32).hex())

    @classmethod
    def from_hex(cls, secret_hex: str) -> Keys:
        if not isinstance(secret_hex, str):
            raise InvalidKey("secret key must be a string")
        secret_hex = secret_hex.strip().lower()
        if not is_hex(secret_hex, 64):
            raise InvalidKey("secret key must be 64 hex characters")
        try:
            signer = coincurve.PrivateKey(bytes.fromhex(secret_hex))
        except ValueError as exc:
            raise InvalidKey("secret key is out of the secp256k1 range") from exc
        public_hex = signer.public_key_xonly.format().hex()
        return cls(secret_hex=secret_hex, public_hex=public_hex, _signer=signer)

    @classmethod
    def from_nsec(cls, nsec: str) -> Keys:
        try:
            raw = nip19.decode_bytes("nsec", nsec)
        except ValueError as exc:
            raise InvalidKey("not a valid nsec") from exc
        return cls.from_hex(raw.hex())

    @classmethod
    def parse(cls, text: str) -> Keys:
        """Accept either an ``nsec1...`` string or 64 hex characters."""
        if isinstance(text, str) and text.strip().lower().startswith("nsec1"):
            return cls.from_nsec(text.strip())
        return cls.from_hex(text)

    @property
    def npub(self) -> str:
        return nip19.encode_bytes("npub", bytes.fromhex(self.public_hex))

    @property
    def nsec(self) -> str:
        return nip19.encode_bytes("nsec", bytes.fromhex(self.secret_hex))

    def conversation_key(self, pubkey_hex: str) -> bytes:
        """The NIP-44 conversation key with ``pubkey_hex``, kept for the ``MAX_CONVERSATIONS``
        peers used last: the agent's key meets each asker twice a job (their seal in, its seal
        out) and itself on every self copy; an ECDH costs ~50 µs."""
        cached = self._conversations.pop(pubkey_hex, None)
        if cached is None:
            cached = nip44.conversation_key(self.secret_hex, pubkey_hex)
            if len(self._conversations) >= MAX_CONVERSATIONS:
                del self._conversations[next(iter(self._conversations))]
        self._conversations[pubkey_hex] = cached  # the most recent last
        return cached

    def sign(self, message32: bytes, aux_rand: bytes | None = None) -> str:
        """BIP-340 Schnorr signature of a 32-byte message, as 128 hex characters."""
        if len(message32) != 32:
            raise ValueError("a Schnorr signature signs exactly 32 bytes")
        aux = secrets.token_bytes(32) if aux_rand is None else aux_rand
        sig: bytes = self._signer.sign_schnorr(message32, aux)
        return sig.hex()


def parse_public_key(text: str) -> str:
    """Accept an ``npub1...`` or 64 hex characters; return the lowercase hex pubkey."""
    if not isinstance(text, str):
        raise InvalidKey("public key must be a string")
    value = text.strip()
    if value.lower().startswith("npub1"):
        try:
            return nip19.decode_bytes("npub", value).hex()
        except ValueError as exc:
            raise InvalidKey("not a valid npub") from exc
    value = value.lower()
    if not is_hex(value, 64):
        raise InvalidKey("public key must be 64 hex characters or an npub")
    return value
