"""The errors raised by the protocol codecs in ``bot.nostr``.

Every codec turns malformed input into one of these, never into a bare ``KeyError``,
``TypeError`` or a third-party exception. They all derive from ``NostrError`` (itself a
``ValueError``), so a caller that only needs "was this input acceptable?" catches one class.

    NostrError
    ├── InvalidKey            a secret or public key that is not valid hex / not on the curve
    ├── Bech32Error           NIP-19: bad checksum, wrong prefix, bad TLV
    ├── InvalidEvent          NIP-01: the event must be dropped
    │   ├── MalformedEvent    bad JSON, missing fields, wrong types, bad hex, too large
    │   ├── EventIdMismatch   the ``id`` field is not the hash of the event
    │   └── BadSignature      the BIP-340 signature does not verify
    ├── DecryptionError       an encrypted payload that cannot be opened
    │   ├── Nip04Error        NIP-04: bad format, base64, IV, padding or UTF-8
    │   └── Nip44Error        NIP-44 v2
    │       ├── UnsupportedVersion   first char ``#`` or a version byte other than 2
    │       ├── InvalidPayload       bad base64, bad length, bad padding, bad UTF-8
    │       └── InvalidMac           authentication failed
    ├── EncryptionError       plaintext that cannot be encrypted (empty, too long)
    ├── GiftWrapError         NIP-59: wrong kinds, author mismatch, bad rumor
    ├── RelayInfoError        NIP-11: a document that is not a JSON object
    └── RelayListError        NIP-65 / NIP-17 relay lists with wrong kind or bad tags

Messages never contain secret key material.
"""


class NostrError(ValueError):
    """Base class: the input violates a Nostr protocol rule."""


class InvalidKey(NostrError):
    """A key is not 32 bytes of hex, is out of range, or is not a curve point."""


class Bech32Error(NostrError):
    """A NIP-19 string does not decode to what was expected."""


class InvalidEvent(NostrError):
    """An event that must be dropped."""


class MalformedEvent(InvalidEvent):
    """The event does not have the NIP-01 shape."""


class EventIdMismatch(InvalidEvent):
    """The ``id`` field is not the SHA-256 of the canonical serialization."""


class BadSignature(InvalidEvent):
    """The signature does not verify against the recomputed id and the pubkey."""


class DecryptionError(NostrError):
    """An encrypted payload cannot be opened."""


class Nip04Error(DecryptionError):
    """A NIP-04 payload is malformed or does not decrypt."""


class Nip44Error(DecryptionError):
    """A NIP-44 payload is malformed or does not decrypt."""


class UnsupportedVersion(Nip44Error):
    """The NIP-44 payload uses an encryption version other than 2."""


class InvalidPayload(Nip44Error):
    """The NIP-44 payload has a bad encoding, length or padding."""


class InvalidMac(Nip44Error):
    """The NIP-44 MAC does not match: wrong key or tampered payload."""


class EncryptionError(NostrError):
    """The plaintext cannot be encrypted (empty or too long)."""


class GiftWrapError(NostrError):
    """A NIP-59 gift wrap, seal or rumor breaks the rules."""


class RelayInfoError(NostrError):
    """A NIP-11 relay information document is not usable."""


class RelayListError(NostrError):
    """A NIP-65 or NIP-17 relay list event is not usable."""
