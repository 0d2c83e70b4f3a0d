"""Prometheus endpoints of in-process processes: RED per RPC, decision cache, outbox, consumers.

Every assertion compares a scrape after some calls with a scrape before them
(exact counts; durations only through their histogram counts).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import grpc
import nats
import pytest

from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_dev.testing import principals
from kit import clock
from kit import nats as kit_nats
from kit.consumer import ConsumerSpec, Delivery, DurableConsumer, PermanentFailureError
from services.records.app import RecordsApp
from tests.fixtures.records import make_ins, professional
from tests.observability.conftest import Assembly, scrape
from tests.records.helpers import create_request, doc

# One worker assembles the package's services (`assembly`) for these and the tracing tests.
pytestmark = pytest.mark.xdist_group("observability")

GET_DOCUMENT = "/dmp.records.v1.RecordsService/GetDocument"
CREATE_DOCUMENT = "/dmp.records.v1.RecordsService/CreateDocument"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def _record_with_document(assembly: Assembly) -> tuple[str, str]:
    """A record (its patient's INS) with one document written by the doctor (its name)."""
    ins = make_ins()
    desk = records_pb2_grpc.RecordsServiceStub(assembly.card_channel("desk"))
    dossier = await desk.CreateDossier(create_request(ins), timeout=15)
    await assembly.wait_projected(dossier.name)
    doctor = records_pb2_grpc.RecordsServiceStub(assembly.card_channel("doctor"))
    created = await doctor.CreateDocument(
        records_pb2.CreateDocumentRequest(
            parent=dossier.name, document=doc(), request_id=str(uuid.uuid4())
        ),
        timeout=15,
    )
    return ins, created.name


async def test_rpc_red_metrics_and_decision_cache(assembly: Assembly) -> None:
    ins, document = await _record_with_document(assembly)
    gw_port = assembly.gateway.metrics
    rec_port = assembly.records.metrics
    assert gw_port is not None
    assert rec_port is not None
    gw_before = await scrape(gw_port.port)
    rec_before = await scrape(rec_port.port)

    patient = records_pb2_grpc.RecordsServiceStub(assembly.patient_channel())
    token = assembly.patient_token(ins)  # one session: one cache entry
    # The record was just written: the gateway caches no decision about it for its settle
    # window (gateway/authz.py); the reads come after it, on the in-process clock.
    with clock.use(clock.ShiftedClock(timedelta(seconds=2), base=clock.current())):
        for _ in range(3):
            await patient.GetDocument(
                records_pb2.GetDocumentRequest(name=document),
                metadata=token,
                timeout=10,
            )
    # Refused by records itself (a malformed name), called directly with a signed principal.
    async with grpc.aio.insecure_channel(assembly.records.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await records_pb2_grpc.RecordsServiceStub(channel).GetDocument(
                records_pb2.GetDocumentRequest(name="not-a-document"),
                metadata=principals.metadata(professional(), GET_DOCUMENT),
                timeout=10,
            )
    bad_code = caught.value.code().name

    gw_after = await scrape(gw_port.port)
    rec_after = await scrape(rec_port.port)
    ok = {"method": GET_DOCUMENT, "code": "OK"}
    assert delta(gw_before, gw_after, "dmp_rpc_requests_total", service="gateway", **ok) == 3
    assert delta(rec_before, rec_after, "dmp_rpc_requests_total", service="records", **ok) == 3
    count = "dmp_rpc_duration_seconds_count"
    assert delta(gw_before, gw_after, count, service="gateway", method=GET_DOCUMENT) == 3
    assert delta(rec_before, rec_after, count, service="records", method=GET_DOCUMENT) == 4
    bad = {"service": "records", "method": GET_DOCUMENT, "code": bad_code}
    assert bad_code == "INVALID_ARGUMENT"
    assert delta(rec_before, rec_after, "dmp_rpc_requests_total", **bad) == 1
    assert delta(rec_before, rec_after, "dmp_rpc_errors_total", **bad) == 1
    assert value(rec_after, "dmp_rpc_errors_total", **{**bad, "code": "OK"}) == 0
    # The first read asked consent, the next two reused the decision.
    lookups = "dmp_gateway_decision_cache_lookups_total"
    assert delta(gw_before, gw_after, lookups, result="miss") == 1
    assert delta(gw_before, gw_after, lookups, result="hit") == 2


async def test_outbox_backlog_and_publications(assembly: Assembly) -> None:
    app = assembly.records.app
    assert isinstance(app, RecordsApp)
    relay = app.relay
    assert relay is not None
    port = assembly.records.metrics
    assert port is not None
    await relay.stop()  # events stay in the outbox until the relay runs again
    try:
        before = await scrape(port.port)
        ins = make_ins()
        desk = records_pb2_grpc.RecordsServiceStub(assembly.card_channel("desk"))
        await desk.CreateDossier(create_request(ins), timeout=15)
        count, age = await relay.sample_lag()
        assert count == 1
        assert age >= 0
        held = await scrape(port.port)
        assert value(held, "dmp_outbox_unpublished_rows", service="records") == 1
    finally:
        relay.start()
    for _ in range(500):
        if (await relay.sample_lag())[0] == 0:
            break
        await asyncio.sleep(0.02)
    after = await scrape(port.port)
    assert value(after, "dmp_outbox_unpublished_rows", service="records") == 0
    assert value(after, "dmp_outbox_oldest_unpublished_age_seconds", service="records") == 0
    published = "dmp_outbox_published_events_total"
    assert delta(before, after, published, service="records") == 1


async def test_consumer_outcomes_durations_and_lag(assembly: Assembly) -> None:
    port = assembly.records.metrics
    assert port is not None
    nc = await nats.connect(assembly.nats_url)
    js = nc.jetstream()
    name = f"OBS_{uuid.uuid4().hex[:8].upper()}"
    subject = f"dmp.obs{name.lower()}.thing.done"
    await kit_nats.ensure_stream(js, kit_nats.StreamSpec(name, (subject,)))
    for i in range(4):
        payload = b"bad" if i == 3 else b"ok"
        await js.publish(subject, payload, headers={"Nats-Msg-Id": f"{name}-{i}"})

    release = asyncio.Event()
    handled: list[bytes] = []

    async def handler(delivery: Delivery) -> None:
        await release.wait()
        if delivery.data == b"bad":
            raise PermanentFailureError("never processable")
        handled.append(delivery.data)

    durable = f"obs-{name.lower()}"
    consumer = DurableConsumer(
        js, ConsumerSpec(stream=name, durable=durable, filter_subject=subject, batch=1), handler
    )
    before = await scrape(port.port)
    consumer.start()
    try:
        await consumer.wait_subscribed()
        # The first message is held by the handler: three are still pending on the server.
        for _ in range(500):
            if await consumer.sample_lag() == 3:
                break
            await asyncio.sleep(0.02)
        held = await scrape(port.port)
        lag = "dmp_consumer_pending_messages"
        assert value(held, lag, stream=name, consumer=durable) == 3
        assert value(held, "dmp_consumer_ack_pending_messages", stream=name, consumer=durable) == 1
        release.set()
        for _ in range(500):
            after = await scrape(port.port)
            if delta(
                before, after, "dmp_consumer_messages_total", consumer=durable, outcome="rejected"
            ):
                break
            await asyncio.sleep(0.02)
        assert await consumer.sample_lag() == 0
        after = await scrape(port.port)
    finally:
        await consumer.stop()
        await js.delete_stream(name)
        await nc.close()
    messages = "dmp_consumer_messages_total"
    assert handled == [b"ok", b"ok", b"ok"]
    assert delta(before, after, messages, consumer=durable, outcome="ack") == 3
    assert delta(before, after, messages, consumer=durable, outcome="rejected") == 1
    assert delta(before, after, "dmp_consumer_failures_total", consumer=durable) == 1
    assert delta(before, after, "dmp_consumer_processing_seconds_count", consumer=durable) == 4
    assert value(after, "dmp_consumer_pending_messages", stream=name, consumer=durable) == 0
