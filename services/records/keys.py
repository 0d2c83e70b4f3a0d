"""The record's data key and sealed content, with the service errors a failure means.

A KEK that does not unwrap a record's key, or content that does not
authenticate, is an operator or storage fault: INTERNAL with a precise reason,
logged with ids only.
"""

from __future__ import annotations

import grpc

from kit.errors import ServiceError
from kit.logs import get_logger
from services.records import crypto
from services.records.repository.rows import DossierRow
from services.records.settings import RecordsSettings

log = get_logger(__name__)


def data_key(row: DossierRow, settings: RecordsSettings) -> bytes:
    """The record's DEK; a KEK that does not unwrap it is an operator error: fail loudly."""
    try:
        return crypto.unwrap(
            crypto.WrappedKey(row.kek_id, row.wrapped_dek), row.dossier_id, settings.kek_bytes()
        )
    except crypto.KeyUnwrapError as exc:
        log.error("data_key_unwrap_failed", dossier=row.dossier_id, kek_id=row.kek_id)
        raise ServiceError(
            grpc.StatusCode.INTERNAL, "DATA_KEY_UNAVAILABLE", "The record key is unavailable."
        ) from exc


def open_content(dek: bytes, sealed: bytes, bound_to: str) -> bytes:
    try:
        return crypto.open_sealed(dek, sealed, bound_to)
    except crypto.DecryptionError as exc:
        log.error("content_decryption_failed", resource=bound_to)
        raise ServiceError(
            grpc.StatusCode.INTERNAL, "CONTENT_UNREADABLE", "Stored content does not decrypt."
        ) from exc
