"""Shared pieces of the handlers: loading a record, its data key, processed requests, events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.records.v1 import events_pb2, records_pb2
from kit.errors import ServiceError, failed_precondition, not_found
from kit.idempotency import Ledger
from kit.logs import get_logger
from kit.outbox import add_event, new_event_id
from services.records import crypto
from services.records.access import Caller, resolve
from services.records.models import dossiers, outbox, processed_requests, representatives
from services.records.settings import RecordsSettings

log = get_logger(__name__)
M = TypeVar("M", bound=Message)
R = records_pb2


@dataclass
class Loaded:
    """A record row, its representatives, and the caller's role on it."""

    row: Any
    reps: list[Any]
    caller: Caller

    @property
    def pk(self) -> int:
        return int(self.row.id)

    @property
    def dossier_id(self) -> str:
        return str(self.row.dossier_id)


def ts(value: datetime | None, target: Any) -> None:
    if value is not None:
        target.FromDatetime(value)


def to_dt(message: Any) -> datetime:
    return datetime.fromtimestamp(message.seconds + message.nanos / 1e9, tz=UTC)


async def load_dossier(
    session: AsyncSession,
    principal: Any,
    *,
    dossier_id: str | None = None,
    patient_ins: str | None = None,
    now: datetime,
    for_update: bool = False,
    allow_closed: bool = False,
    allow_terms: bool = False,
    terms_version: str = "",
) -> Loaded:
    """The record with the caller's role, after the closed / terms gates (rules 9, 10)."""
    query = select(dossiers)
    if dossier_id is not None:
        query = query.where(dossiers.c.dossier_id == dossier_id)
    else:
        query = query.where(dossiers.c.patient_ins == patient_ins)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).one_or_none()
    if row is None:
        raise not_found("NOT_FOUND", "Record not found.")
    reps = list(
        (
            await session.execute(
                select(representatives)
                .where(representatives.c.dossier_pk == row.id)
                .order_by(representatives.c.id)
            )
        ).all()
    )
    caller = resolve(principal, row.patient_ins, reps, now)
    if row.state == R.DOSSIER_STATE_CLOSED and not allow_closed:
        raise failed_precondition("DOSSIER_CLOSED", "The record is closed.")
    if row.state == R.DOSSIER_STATE_TERMS_ACCEPTANCE_REQUIRED and not allow_terms:
        raise ServiceError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "TERMS_NOT_ACCEPTED",
            "The current terms of use must be accepted first.",
            metadata={"current_terms_version": terms_version},
        )
    return Loaded(row, reps, caller)


def data_key(row: Any, settings: RecordsSettings) -> bytes:
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


# Processed requests (kit.idempotency); `dossier_pk` lets the purge drop a record's
# stored answers with it. Plain hashes: records' requests hold no password or code.
REQUESTS = Ledger(processed_requests)


# ---------------------------------------------------------------------------
# Events (ids and states only)
# ---------------------------------------------------------------------------


def header(actor: str, now: datetime) -> tuple[str, events_pb2.EventHeader]:
    event_id = new_event_id()
    head = events_pb2.EventHeader(event_id=event_id, actor=actor)
    head.occur_time.FromDatetime(now)
    return event_id, head


async def emit(session: AsyncSession, subject: str, event_id: str, payload: Message) -> None:
    await add_event(session, outbox, subject, payload, event_id=event_id)
