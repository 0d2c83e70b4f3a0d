"""Envelope encryption of record content.

Each record has its own random 256-bit data key (DEK). The DEK is stored only
wrapped (AES-256-GCM) by a key-encryption key (KEK) from settings, with the
record id and KEK id as associated data, so a wrapped key cannot be moved to
another record. Content is sealed with the DEK, the associated data naming the
document (or item), so ciphertexts cannot be swapped between rows. Rotating
the KEK re-wraps DEKs only; content is never re-encrypted.

Any authentication failure raises `KeyUnwrapError` / `DecryptionError`: a wrong
key must fail loudly, never return garbage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class KeyUnwrapError(RuntimeError):
    """The record's data key cannot be unwrapped (wrong or missing KEK, tampered row)."""


class DecryptionError(RuntimeError):
    """Content does not authenticate under the record's data key."""


@dataclass(frozen=True)
class WrappedKey:
    kek_id: str
    blob: bytes  # nonce || ciphertext+tag


def _wrap_aad(dossier_id: str, kek_id: str) -> bytes:
    return f"dmp-records-dek|{dossier_id}|{kek_id}".encode()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap(dek: bytes, dossier_id: str, kek_id: str, keks: dict[str, bytes]) -> WrappedKey:
    nonce = os.urandom(NONCE_BYTES)
    blob = AESGCM(keks[kek_id]).encrypt(nonce, dek, _wrap_aad(dossier_id, kek_id))
    return WrappedKey(kek_id, nonce + blob)


def unwrap(wrapped: WrappedKey, dossier_id: str, keks: dict[str, bytes]) -> bytes:
    kek = keks.get(wrapped.kek_id)
    if kek is None:
        raise KeyUnwrapError(f"KEK {wrapped.kek_id!r} is not configured")
    try:
        return AESGCM(kek).decrypt(
            wrapped.blob[:NONCE_BYTES],
            wrapped.blob[NONCE_BYTES:],
            _wrap_aad(dossier_id, wrapped.kek_id),
        )
    except InvalidTag as exc:
        raise KeyUnwrapError(f"data key of {dossier_id} does not unwrap") from exc


def rewrap(
    wrapped: WrappedKey, dossier_id: str, keks: dict[str, bytes], new_kek_id: str
) -> WrappedKey:
    return wrap(unwrap(wrapped, dossier_id, keks), dossier_id, new_kek_id, keks)


def seal(dek: bytes, plaintext: bytes, bound_to: str) -> bytes:
    """nonce || AES-GCM(plaintext), authenticated with `bound_to` (e.g. the document id)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(dek).encrypt(nonce, plaintext, bound_to.encode())


def open_sealed(dek: bytes, sealed: bytes, bound_to: str) -> bytes:
    try:
        return AESGCM(dek).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], bound_to.encode())
    except InvalidTag as exc:
        raise DecryptionError(f"content of {bound_to} does not authenticate") from exc
