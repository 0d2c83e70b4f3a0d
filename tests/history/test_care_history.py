"""Backfill on record creation, the 24-month window, GetCareHistory, the AMO's denied read."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import nats
import pytest

from dmp.history.v1 import history_pb2
from dmp.records.v1 import events_pb2, records_pb2
from dmp_dev.testing import principals
from kit import nats as kit_nats
from kit.errors import error_info
from services.history_feed.materialize import months_before
from tests.fixtures.history import HistoryClient, batches_of, reader
from tests.history.lines import act, ago, drug, new_ins, pdate, prefix


def dossier_name() -> str:
    return f"dossiers/d{uuid.uuid4().hex[:16]}"


async def publish_dossier_created(nats_url: str, dossier: str, ins: str) -> str:
    event_id = uuid.uuid4().hex
    event = events_pb2.DossierCreated(
        dossier=dossier,
        patient_ins=ins,
        state=records_pb2.DOSSIER_STATE_ACTIVE,
    )
    event.header.event_id = event_id
    event.header.occur_time.GetCurrentTime()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await kit_nats.ensure_stream(js, kit_nats.STREAMS["records"])
        await js.publish(
            "dmp.records.dossier.created",
            event.SerializeToString(),
            headers={"Nats-Msg-Id": event_id},
        )
    finally:
        await nc.close()
    return event_id


async def wait_for_history(
    history: HistoryClient, dossier: str
) -> history_pb2.GetCareHistoryResponse:
    for _ in range(100):
        response = await history.read(dossier, drug_grouping=history_pb2.DRUG_GROUPING_NONE)
        if response.HasField("history_start_date"):
            return response
        await asyncio.sleep(0.05)
    raise AssertionError("the record was not backfilled")


def line_ids(response: history_pb2.GetCareHistoryResponse) -> list[str]:
    return [e.line.line_id for e in response.entries if e.WhichOneof("entry") == "line"]


async def test_backfill_on_record_creation_and_window(
    history: HistoryClient, nats_url: str
) -> None:
    pfx, ins, dossier = prefix(), new_ins(), dossier_name()
    lines = [
        drug(pfx + "recent", ins, ago(days=10)),
        act(pfx + "act", ins, ago(months=12)),
        drug(pfx + "edge", ins, ago(months=24)),  # first day of the window: kept
        drug(pfx + "old", ins, ago(months=24, days=1)),  # rolled off
        drug(pfx + "older", ins, ago(months=30)),
        drug(pfx + "other", new_ins(), ago(days=5)),  # someone else
    ]
    await history.ingest(batches_of(lines, 6))
    # Before the record exists, nothing is shown.
    assert not (await history.read(dossier)).entries

    await publish_dossier_created(nats_url, dossier, ins)
    response = await wait_for_history(history, dossier)
    assert line_ids(response) == [pfx + "recent", pfx + "act", pfx + "edge"]
    assert response.history_start_date == pdate(months_before(ago(), 24))
    assert response.name == f"{dossier}/careHistory"
    assert response.HasField("last_receive_time")
    assert all(e.line.HasField("receive_time") for e in response.entries)

    # Later lines flow in as they arrive.
    await history.ingest(batches_of([drug(pfx + "later", ins, ago(days=1))], 1))
    response = await history.read(dossier, drug_grouping=history_pb2.DRUG_GROUPING_NONE)
    assert line_ids(response)[0] == pfx + "later"
    # The source lines stay: the rolled-off ones are still stored.
    assert pfx + "old" in await history.stored(pfx)


async def test_redelivered_event_is_idempotent(history: HistoryClient) -> None:
    pfx, ins, dossier = prefix(), new_ins(), dossier_name()
    await history.ingest(batches_of([drug(pfx + str(i), ins, ago(days=i)) for i in range(3)], 3))
    event_id = str(uuid.uuid4())
    first = await history.backfill(dossier, ins, request_id=event_id)
    assert (first.materialized_count, first.already_present_count) == (3, 0)
    assert first.care_history == f"{dossier}/careHistory"
    await history.ingest(batches_of([drug(pfx + "new", ins, ago(days=1))], 1))
    retry = await history.backfill(dossier, ins, request_id=event_id)
    assert retry == first
    other = await history.backfill(dossier, ins)
    assert (other.materialized_count, other.already_present_count) == (0, 4)


async def test_backfill_since_date(history: HistoryClient) -> None:
    pfx, ins, dossier = prefix(), new_ins(), dossier_name()
    await history.ingest(
        batches_of([drug(pfx + "a", ins, ago(months=2)), drug(pfx + "b", ins, ago(months=8))], 2)
    )
    response = await history.backfill(dossier, ins, since_date=pdate(ago(months=6)))
    assert response.materialized_count == 1
    read = await history.read(dossier, drug_grouping=history_pb2.DRUG_GROUPING_NONE)
    assert line_ids(read) == [pfx + "a"]


async def test_backfill_is_internal_and_checks_input(history: HistoryClient) -> None:
    request = history_pb2.BackfillDossierRequest(
        name=dossier_name(), patient_ins=new_ins(), request_id="r"
    )
    meta = principals.metadata(
        principals.service(), "/dmp.history.v1.HistoryFeedService/BackfillDossier"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await history.stub.BackfillDossier(request, metadata=meta)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for kwargs, reason in [
        ({"ins": "185057000001199"}, "INS_KEY_MISMATCH"),
        ({"dossier": "records/1"}, "INVALID_NAME"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await history.backfill(
                kwargs.get("dossier", dossier_name()), kwargs.get("ins", new_ins())
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        info = error_info(caught.value)
        assert info is not None
        assert info.reason == reason
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await history.backfill(
            dossier_name(), new_ins(), since_date=history_pb2.Date(year=2024, month=2, day=30)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == "INVALID_SINCE_DATE"


async def test_amo_never_reads(history: HistoryClient) -> None:
    ins, dossier = new_ins(), dossier_name()
    await history.backfill(dossier, ins)
    for principal in (principals.service(), principals.staff("cpam-1", ("alimentation_amo",))):
        principal.scope.readable_class_codes.append("60")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await history.read(dossier, principal)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        info = error_info(caught.value)
        assert info is not None
        assert info.reason == "AMO_CANNOT_READ"


async def test_scope_without_class_60_sees_nothing(history: HistoryClient) -> None:
    pfx, ins, dossier = prefix(), new_ins(), dossier_name()
    await history.ingest(batches_of([drug(pfx + "a", ins, ago(days=2))], 1))
    await history.backfill(dossier, ins)
    assert len((await history.read(dossier)).entries) == 1
    for principal in (reader(("10", "11")), reader(()), principals.patient(ins)):
        response = await history.read(dossier, principal)
        assert not response.entries
        assert not response.HasField("history_start_date")
    administrative = reader()
    administrative.scope.administrative_only = True
    assert not (await history.read(dossier, administrative)).entries


async def test_drug_lines_grouped_by_atc_class(history: HistoryClient) -> None:
    pfx, ins, dossier = prefix(), new_ins(), dossier_name()
    lines = [
        drug(pfx + "r1", ins, ago(days=40), atc="C09AA05", billed=400),
        drug(pfx + "r2", ins, ago(days=10), atc="C09AA02", billed=500),
        drug(pfx + "s1", ins, ago(days=20), atc="C10AA07", billed=1370),
        act(pfx + "g", ins, ago(days=15)),
    ]
    await history.ingest(batches_of(lines, 4))
    await history.backfill(dossier, ins)
    response = await history.read(dossier)
    kinds = [e.WhichOneof("entry") for e in response.entries]
    assert kinds == ["drug_group", "line", "drug_group"]
    group = response.entries[0].drug_group
    assert group.atc_class_code == "C09A"
    assert group.atc_class_label
    assert group.line_count == 2
    assert group.billed_amount_cents == 900
    assert (group.first_care_date, group.last_care_date) == (
        pdate(ago(days=40)),
        pdate(ago(days=10)),
    )
    assert [ln.line_id for ln in group.lines] == [pfx + "r2", pfx + "r1"]
    level1 = await history.read(dossier, atc_level=1)
    assert [e.drug_group.atc_class_code for e in level1.entries if e.HasField("drug_group")] == [
        "C"
    ]
    assert level1.entries[0].drug_group.line_count == 3
    only = await history.read(
        dossier, filter='atc_code = "C10*"', drug_grouping=history_pb2.DRUG_GROUPING_NONE
    )
    assert line_ids(only) == [pfx + "s1"]


async def test_filters_and_pagination(history: HistoryClient) -> None:
    pfx, ins, dossier = prefix(), new_ins(), dossier_name()
    lines = [act(f"{pfx}{i:02d}", ins, ago(days=i)) for i in range(12)]
    lines.append(drug(pfx + "d", ins, ago(days=3)))
    await history.ingest(batches_of(lines, 13))
    await history.backfill(dossier, ins)

    acts_only = await history.read(dossier, filter="kind = MEDICAL_ACT")
    assert len(acts_only.entries) == 12
    ranged = await history.read(
        dossier, filter=f"care_date >= {ago(days=5)} AND care_date <= {ago(days=2)}"
    )
    assert len(ranged.entries) == 5  # four acts and the drug group

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await history.read(
            dossier, filter="kind = CLAIM_KIND_MEDICAL_ACT", page_size=5, page_token=token
        )
        seen.extend(line_ids(page))
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == [f"{pfx}{i:02d}" for i in range(12)]

    first = await history.read(dossier, page_size=5)
    for fields, reason in [
        (
            {"page_token": first.next_page_token, "filter": "kind = DRUG"},
            "INVALID_PAGE_TOKEN",
        ),
        ({"page_token": "garbage!"}, "INVALID_PAGE_TOKEN"),
        ({"filter": f"care_date >= {ago()} AND care_date <= {ago(days=3)}"}, "INVALID_FILTER"),
        ({"filter": "care_date >= 2024-13-01"}, "INVALID_FILTER"),
        ({"filter": "kind = LUNCH"}, "INVALID_FILTER"),
        ({"filter": 'atc_code = "C10"'}, "INVALID_FILTER"),
        ({"filter": 'atc_code = "Z*"'}, "INVALID_FILTER"),
        ({"atc_level": 6}, "INVALID_ATC_LEVEL"),
        ({"page_size": -1}, "INVALID_PAGE_SIZE"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await history.read(dossier, **fields)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        info = error_info(caught.value)
        assert info is not None
        assert info.reason == reason


async def test_bad_name_refused(history: HistoryClient) -> None:
    request = history_pb2.GetCareHistoryRequest(name="dossiers/x/documents")
    meta = principals.metadata(reader(), "/dmp.history.v1.HistoryFeedService/GetCareHistory")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await history.stub.GetCareHistory(request, metadata=meta)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
