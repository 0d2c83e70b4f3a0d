"""What history_feed consumes: `dmp.records.dossier.created`, which starts a record's history.

A `kit.consumer` durable consumer hands each event to `backfill_for`: the
record is backfilled under the event id as its request id, then the event is
acked, so a redelivery (crash before the ack) answers from the stored
backfill. An event that can never succeed (undecodable, bad INS, malformed
name, record of another INS) is terminated instead of looping; any other
failure is retried after a delay, in order, one message at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.message import DecodeError

from dmp.history.v1 import history_pb2
from dmp.records.v1 import events_pb2
from kit import nats as kit_nats
from kit.consumer import ConsumerSpec, Delivery, Handler, PermanentFailureError
from kit.errors import ServiceError
from kit.logs import get_logger

log = get_logger(__name__)

DOSSIER_CREATED = "dmp.records.dossier.created"
#: The scope of the backfills events ask for (kit.idempotency keeps them apart from RPCs').
SCOPE = DOSSIER_CREATED
#: Refusals no redelivery can change.
_FINAL = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)

Backfill = Callable[[history_pb2.BackfillDossierRequest, str], Awaitable[object]]


def spec(durable: str) -> ConsumerSpec:
    """Batches of 32, up to 20 attempts 2 s apart."""
    return ConsumerSpec(
        stream=kit_nats.STREAMS["records"].name,
        durable=durable,
        filter_subject=DOSSIER_CREATED,
        ack_wait_s=30.0,
        max_deliver=20,
        batch=32,
        fetch_timeout_s=1.0,
        backoff_s=(2.0,),
    )


def request_id(event: events_pb2.DossierCreated) -> str:
    """The event id (a UUID from records' outbox); one derived from the record otherwise."""
    try:
        return str(uuid.UUID(event.header.event_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{DOSSIER_CREATED}/{event.dossier}"))


def backfill_for(backfill: Backfill) -> Handler:
    """The consumer's handler: one backfill per event, under the event's scope."""

    async def handle(delivery: Delivery) -> None:
        try:
            event = events_pb2.DossierCreated.FromString(delivery.data)
        except DecodeError:
            log.error("event_malformed", subject=delivery.subject)
            raise PermanentFailureError from None
        request = history_pb2.BackfillDossierRequest(
            name=event.dossier, patient_ins=event.patient_ins, request_id=request_id(event)
        )
        try:
            await backfill(request, SCOPE)
        except ServiceError as exc:
            if exc.code in _FINAL:
                log.error("event_refused", event_id=event.header.event_id, reason=exc.reason)
                raise PermanentFailureError from exc
            raise

    return handle
