"""NIP-44 v2 encryption: secp256k1 ECDH + HKDF-SHA256 + ChaCha20 + HMAC-SHA256.

``encrypt`` accepts 1..65535 bytes of UTF-8 plaintext (the 2-byte length prefix that every
client understands). ``decrypt`` accepts both the 2-byte prefix and the 6-byte extended prefix
(plaintexts of 65536 bytes and more, allowed by NIP-44 since 2026-06) up to ``max_payload_chars``.
Every malformed or unauthentic payload raises a ``Nip44Error`` subclass.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Final

import coincurve
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from bot.nostr.errors import (
    EncryptionError,
    InvalidKey,
    InvalidMac,
    InvalidPayload,
    UnsupportedVersion,
)
from bot.nostr.hexutil import is_hex

VERSION: Final = 2
MIN_PLAINTEXT_SIZE: Final = 1
MAX_SHORT_PLAINTEXT_SIZE: Final = 65535
EXTENDED_PREFIX_THRESHOLD: Final = 65536
MAX_PAYLOAD_CHARS: Final = 1 << 20
"""Default cap on an incoming payload (base64 characters) before any decoding work."""

_SALT: Final = b"nip44-v2"


def conversation_key(secret_hex: str, pubkey_hex: str) -> bytes:
    """The 32-byte long-term key shared by ``secret_hex``'s owner and ``pubkey_hex``."""
    if not is_hex(secret_hex, 64):
        raise InvalidKey("secret key must be 64 lowercase hex characters")
    if not is_hex(pubkey_hex, 64):
        raise InvalidKey("public key must be 64 lowercase hex characters")
    try:
        point = coincurve.PublicKey(b"\x02" + bytes.fromhex(pubkey_hex))
        shared = point.multiply(bytes.fromhex(secret_hex))
    except ValueError as exc:
        raise InvalidKey("key is not a valid secp256k1 scalar or point") from exc
    shared_x = shared.format(compressed=True)[1:]
    return hmac.new(_SALT, shared_x, hashlib.sha256).digest()


def message_keys(conv_key: bytes, nonce: bytes) -> tuple[bytes, bytes, bytes]:
    """(chacha_key, chacha_nonce, hmac_key) for one message."""
    if len(conv_key) != 32:
        raise InvalidKey("conversation key must be 32 bytes")
    if len(nonce) != 32:
        raise InvalidPayload("nonce must be 32 bytes")
    okm = HKDFExpand(algorithm=hashes.SHA256(), length=76, info=nonce).derive(conv_key)
    return okm[0:32], okm[32:44], okm[44:76]


def calc_padded_len(unpadded_len: int) -> int:
    if unpadded_len <= 0:
        raise EncryptionError("plaintext length must be positive")
    if unpadded_len <= 32:
        return 32
    next_power = 1 << (unpadded_len - 1).bit_length()
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((unpadded_len - 1) // chunk + 1)


def _pad(plaintext: bytes, *, allow_extended: bool) -> bytes:
    n = len(plaintext)
    limit = 0xFFFFFFFF if allow_extended else MAX_SHORT_PLAINTEXT_SIZE
    if not MIN_PLAINTEXT_SIZE <= n <= limit:
        raise EncryptionError(f"plaintext must be 1..{limit} bytes of UTF-8")
    if n >= EXTENDED_PREFIX_THRESHOLD:
        prefix = b"\x00\x00" + n.to_bytes(4, "big")
    else:
        prefix = n.to_bytes(2, "big")
    return prefix + plaintext + bytes(calc_padded_len(n) - n)


def _unpad(padded: bytes) -> str:
    if len(padded) < 2:
        raise InvalidPayload("invalid padding")
    first_two = int.from_bytes(padded[0:2], "big")
    if first_two == 0:
        if len(padded) < 6:
            raise InvalidPayload("invalid padding")
        n = int.from_bytes(padded[2:6], "big")
        if n < EXTENDED_PREFIX_THRESHOLD:
            raise InvalidPayload("invalid padding")
        prefix_len = 6
    else:
        n, prefix_len = first_two, 2
    unpadded = padded[prefix_len : prefix_len + n]
    if len(unpadded) != n or len(padded) != prefix_len + calc_padded_len(n):
        raise InvalidPayload("invalid padding")
    try:
        return unpadded.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidPayload("plaintext is not UTF-8") from exc


def _chacha20(key: bytes, nonce12: bytes, data: bytes) -> bytes:
    cipher = Cipher(algorithms.ChaCha20(key, b"\x00\x00\x00\x00" + nonce12), mode=None)
    enc = cipher.encryptor()
    return enc.update(data) + enc.finalize()


def _hmac_aad(key: bytes, message: bytes, aad: bytes) -> bytes:
    return hmac.new(key, aad + message, hashlib.sha256).digest()


def encrypt(plaintext: str, conv_key: bytes, nonce: bytes | None = None, *,
            allow_extended: bool = False) -> str:
    """Encrypt to a base64 payload. ``nonce`` is random unless given (tests only).

    ``allow_extended`` enables the 6-byte prefix for plaintexts of 65536 bytes and more; it
    stays off for messages we send, because older clients reject such payloads.
    """
    if not isinstance(plaintext, str):
        raise EncryptionError("plaintext must be a string")
    try:
        raw = plaintext.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncryptionError("plaintext is not valid Unicode") from exc
    nonce = secrets.token_bytes(32) if nonce is None else nonce
    chacha_key, chacha_nonce, hmac_key = message_keys(conv_key, nonce)
    ciphertext = _chacha20(chacha_key, chacha_nonce, _pad(raw, allow_extended=allow_extended))
    mac = _hmac_aad(hmac_key, ciphertext, nonce)
    return base64.b64encode(bytes([VERSION]) + nonce + ciphertext + mac).decode("ascii")


def decrypt(payload: str, conv_key: bytes, *, max_payload_chars: int = MAX_PAYLOAD_CHARS) -> str:
    """Authenticate and decrypt a base64 payload, or raise a ``Nip44Error``."""
    if not isinstance(payload, str):
        raise InvalidPayload("payload must be a string")
    plen = len(payload)
    if plen == 0 or payload[0] == "#":
        raise UnsupportedVersion("unknown encryption version")
    if plen < 132 or plen > max_payload_chars:
        raise InvalidPayload(f"invalid payload length: {plen}")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidPayload("invalid base64") from exc
    if len(data) < 99:
        raise InvalidPayload("invalid data size")
    if data[0] != VERSION:
        raise UnsupportedVersion(f"unknown encryption version {data[0]}")
    nonce, ciphertext, mac = data[1:33], data[33:-32], data[-32:]
    chacha_key, chacha_nonce, hmac_key = message_keys(conv_key, nonce)
    if not hmac.compare_digest(_hmac_aad(hmac_key, ciphertext, nonce), mac):
        raise InvalidMac("invalid MAC")
    return _unpad(_chacha20(chacha_key, chacha_nonce, ciphertext))
