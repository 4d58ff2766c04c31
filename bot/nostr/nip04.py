"""NIP-04 legacy encrypted DMs (AES-256-CBC over the raw ECDH x coordinate).

Encryption and the shared secret come from pynostr; decryption validates the
``base64?iv=base64`` shape, strict base64, IV and block sizes before decrypting, and turns
every failure (bad padding, bad UTF-8, bad key) into a ``Nip04Error``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pynostr.key import PrivateKey

from bot.nostr.errors import EncryptionError, InvalidKey, Nip04Error
from bot.nostr.hexutil import is_hex

KIND_ENCRYPTED_DM: Final = 4
MAX_CONTENT_CHARS: Final = 1 << 20


def shared_secret(secret_hex: str, pubkey_hex: str) -> bytes:
    if not is_hex(secret_hex, 64) or not is_hex(pubkey_hex, 64):
        raise InvalidKey("keys must be 64 lowercase hex characters")
    try:
        secret: bytes = PrivateKey(bytes.fromhex(secret_hex)).compute_shared_secret(pubkey_hex)
    except Exception as exc:  # pynostr raises bare Exception / ValueError for bad keys
        raise InvalidKey("key is not a valid secp256k1 scalar or point") from exc
    return secret


def encrypt(secret_hex: str, pubkey_hex: str, plaintext: str) -> str:
    if not isinstance(plaintext, str):
        raise EncryptionError("plaintext must be a string")
    try:
        plaintext.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncryptionError("plaintext is not valid Unicode") from exc
    shared_secret(secret_hex, pubkey_hex)  # validates both keys with a typed error
    result: str = PrivateKey(bytes.fromhex(secret_hex)).encrypt_message(plaintext, pubkey_hex)
    return result


def decrypt(secret_hex: str, pubkey_hex: str, content: str) -> str:
    return decrypt_with_secret(shared_secret(secret_hex, pubkey_hex), content)


def decrypt_with_secret(key: bytes, content: str) -> str:
    """Decrypt with a precomputed ``shared_secret`` (saves the ECDH for repeated peers)."""
    if not isinstance(content, str) or len(content) > MAX_CONTENT_CHARS:
        raise Nip04Error("content must be a string of reasonable size")
    parts = content.split("?iv=")
    if len(parts) != 2:
        raise Nip04Error("content must look like base64?iv=base64")
    try:
        ciphertext = base64.b64decode(parts[0], validate=True)
        iv = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Nip04Error("invalid base64") from exc
    if len(iv) != 16:
        raise Nip04Error("IV must be 16 bytes")
    if not ciphertext or len(ciphertext) % 16:
        raise Nip04Error("ciphertext must be whole AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        raw = unpadder.update(padded) + unpadder.finalize()
        return raw.decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Nip04Error("wrong key or corrupted payload") from exc
