"""One document upload is one trace: gateway → records → outbox relay → NATS → notify → e-mail."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import select

from dmp.consent.v1 import consent_pb2, consent_pb2_grpc
from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_dev import pki
from services.notify.models import dossier_patients
from tests.fixtures.records import make_ins
from tests.observability.conftest import Assembly, span_tree
from tests.records.helpers import create_request, doc

# One worker assembles the package's services (`assembly`) for these and the metrics tests.
pytestmark = pytest.mark.xdist_group("observability")

CREATE_DOCUMENT = "dmp.records.v1.RecordsService/CreateDocument"
AUTHORIZE = "dmp.consent.v1.ConsentService/Authorize"
GRANT_ACCESS = "dmp.consent.v1.ConsentService/GrantAccess"
ADDED = "dmp.records.document.added"
DOCUMENT_KIND = "NOTIFICATION_KIND_DOCUMENT_ADDED"
FIRST_ACCESS_KIND = "NOTIFICATION_KIND_FIRST_ACCESS"


async def _notify_knows(assembly: Assembly, dossier: str) -> None:
    """notify projected dossier.created: the document event will not wait for it."""
    for _ in range(500):
        async with assembly.notify.app.db() as session:
            row = (
                await session.execute(
                    select(dossier_patients.c.dossier).where(dossier_patients.c.dossier == dossier)
                )
            ).first()
        if row is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("notify never projected the dossier")


async def _wait_span(spans: InMemorySpanExporter, trace_id: int, name: str, kind: str) -> None:
    for _ in range(1000):
        if any(
            s.name == name and (s.attributes or {}).get("dmp.notification.kind") == kind
            for s in span_tree(spans.get_finished_spans(), trace_id)
        ):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {name!r} span in the trace")


def _one(
    spans: list[ReadableSpan], name: str, scope: str = "", **attributes: object
) -> ReadableSpan:
    """The single span named `name` (of the server `dmp.rpc.<scope>` if given)."""
    found = [
        s
        for s in spans
        if s.name == name
        and (not scope or (s.instrumentation_scope and s.instrumentation_scope.name == scope))
        and all((s.attributes or {}).get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (name, scope, attributes, [(s.name, s.attributes) for s in spans])
    return found[0]


def _parent_of(span: ReadableSpan) -> int:
    assert span.parent is not None, span.name
    return span.parent.span_id


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


async def test_document_upload_is_one_trace_down_to_the_email(
    assembly: Assembly, spans: InMemorySpanExporter
) -> None:
    ins = make_ins()
    email = f"trace-{uuid.uuid4().hex[:8]}@exemple.fr"
    await assembly.set_email(ins, email)
    desk = records_pb2_grpc.RecordsServiceStub(assembly.card_channel("desk"))
    dossier = await desk.CreateDossier(create_request(ins), timeout=15)
    await assembly.wait_projected(dossier.name)
    await _notify_knows(assembly, dossier.name)

    # The client starts the trace (W3C traceparent in metadata); the gateway continues it.
    trace_id = random.getrandbits(128)
    client_span_id = random.getrandbits(64)
    traceparent = f"00-{trace_id:032x}-{client_span_id:016x}-01"
    doctor = records_pb2_grpc.RecordsServiceStub(assembly.card_channel("doctor"))
    request = records_pb2.CreateDocumentRequest(
        parent=dossier.name, document=doc(), request_id=str(uuid.uuid4())
    )
    await doctor.CreateDocument(request, metadata=(("traceparent", traceparent),), timeout=15)

    await _wait_span(spans, trace_id, "send email", DOCUMENT_KIND)
    added_mails = [m for m in assembly.smtp.messages_to(email) if "document" in m.subject.lower()]
    assert len(added_mails) == 1, [m.subject for m in assembly.smtp.messages_to(email)]

    trace = span_tree(spans.get_finished_spans(), trace_id)
    gateway = _one(trace, CREATE_DOCUMENT, scope="dmp.rpc.gateway")
    authorize = _one(trace, AUTHORIZE, scope="dmp.rpc.consent")
    records = _one(trace, CREATE_DOCUMENT, scope="dmp.rpc.records")
    publish = _one(trace, f"publish {ADDED}")
    processed = [
        s
        for s in trace
        if s.name == f"process {ADDED}"
        and "records-document" in str((s.attributes or {})["messaging.consumer.group.name"])
    ]
    send = _one(trace, "send email", **{"dmp.notification.kind": DOCUMENT_KIND})

    assert gateway.kind == SpanKind.SERVER
    assert gateway.parent is not None
    assert gateway.parent.is_remote
    assert _parent_of(gateway) == client_span_id
    assert _parent_of(authorize) == _id(gateway)
    assert records.kind == SpanKind.SERVER
    assert _parent_of(records) == _id(gateway)
    assert publish.kind == SpanKind.PRODUCER
    assert _parent_of(publish) == _id(records)
    assert (publish.attributes or {})["messaging.message.id"]
    assert processed, "notify's consumer span is missing"
    assert all(s.kind == SpanKind.CONSUMER for s in processed)
    assert all(_parent_of(s) == _id(publish) for s in processed)
    acked = [s for s in processed if (s.attributes or {})["dmp.consumer.outcome"] == "ack"]
    assert len(acked) == 1
    assert send.kind == SpanKind.CLIENT
    assert _parent_of(send) == _id(acked[0])


async def test_attested_consent_is_one_trace_down_to_the_first_access_email(
    assembly: Assembly, spans: InMemorySpanExporter
) -> None:
    """A deposit is no consultation (no first-access alert): the professional's attested
    care-context consent is, and consent's event carries the trace to notify's e-mail."""
    ins = make_ins()
    email = f"trace-{uuid.uuid4().hex[:8]}@exemple.fr"
    await assembly.set_email(ins, email)
    desk = records_pb2_grpc.RecordsServiceStub(assembly.card_channel("desk"))
    dossier = await desk.CreateDossier(create_request(ins), timeout=15)
    await assembly.wait_projected(dossier.name)
    await _notify_knows(assembly, dossier.name)

    trace_id = random.getrandbits(128)
    traceparent = f"00-{trace_id:032x}-{random.getrandbits(64):016x}-01"
    doctor = consent_pb2_grpc.ConsentServiceStub(assembly.card_channel("doctor"))
    await doctor.GrantAccess(
        consent_pb2.GrantAccessRequest(
            parent=dossier.name,
            professional_rpps=pki.DEMO_CARDS["doctor"].rpps,
            care_context=consent_pb2.CareContext(
                consent_attested=True, practice_setting_code="AMBULATOIRE"
            ),
            request_id=str(uuid.uuid4()),
        ),
        metadata=(("traceparent", traceparent),),
        timeout=15,
    )
    await _wait_span(spans, trace_id, "send email", FIRST_ACCESS_KIND)

    trace = span_tree(spans.get_finished_spans(), trace_id)
    grant = _one(trace, GRANT_ACCESS, scope="dmp.rpc.consent")
    access = _one(trace, "send email", **{"dmp.notification.kind": FIRST_ACCESS_KIND})
    access_process = next(s for s in trace if _id(s) == _parent_of(access))
    access_publish = next(s for s in trace if _id(s) == _parent_of(access_process))
    assert access_process.kind == SpanKind.CONSUMER
    assert access_publish.name == "publish dmp.consent.access.recorded"
    assert access_publish.kind == SpanKind.PRODUCER
    assert _parent_of(access_publish) == _id(grant)
