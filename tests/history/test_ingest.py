"""IngestClaims: counts, idempotency, conflicts, bad lines, stream errors, cut streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import pytest

from dmp.history.v1 import history_pb2
from dmp_dev.testing import principals
from kit.errors import error_info
from services.history_feed.synthetic import Generator
from tests.fixtures.history import MAX_LINES_PER_MESSAGE, HistoryClient, batches_of
from tests.history.cda_sample import sample_lines
from tests.history.lines import ago, drug, new_ins, pdate, prefix
from tests.waits import finished_calls, until

INGEST = "/dmp.history.v1.HistoryFeedService/IngestClaims"


def synthetic(count: int, pfx: str) -> list[history_pb2.ClaimLine]:
    return list(Generator(seed=hash(pfx) % 1000, patients=20, months=20, prefix=pfx).lines(count))


async def test_ingest_cnam_sample_history(history: HistoryClient) -> None:
    lines = sample_lines()
    pfx = prefix()
    for line in lines:
        line.line_id = pfx + line.line_id
    response = await history.ingest(batches_of(lines, 7))
    assert response.accepted_count == 25
    assert (response.duplicate_count, response.rejected_count) == (0, 0)
    assert response.batch_count == 4
    assert response.ingest_id
    assert len(await history.stored(pfx)) == 25


async def test_resending_changes_nothing(history: HistoryClient) -> None:
    pfx = prefix()
    lines = synthetic(95, pfx)
    first = await history.ingest(batches_of(lines, 20))
    assert (first.accepted_count, first.duplicate_count, first.rejected_count) == (95, 0, 0)
    before = await history.stored(pfx)
    again = await history.ingest(batches_of(lines, 30))
    assert (again.accepted_count, again.duplicate_count, again.rejected_count) == (0, 95, 0)
    assert await history.stored(pfx) == before


async def test_same_id_within_one_stream_is_a_duplicate(history: HistoryClient) -> None:
    pfx = prefix()
    line = drug(pfx + "1", new_ins(), ago(days=3))
    response = await history.ingest(batches_of([line, line, line], 3))
    assert (response.accepted_count, response.duplicate_count) == (1, 2)


async def test_same_id_other_content_is_rejected_and_first_kept(history: HistoryClient) -> None:
    pfx = prefix()
    ins = new_ins()
    original = drug(pfx + "A", ins, ago(days=3), quantity=1)
    changed = drug(pfx + "A", ins, ago(days=3), quantity=2)
    await history.ingest(batches_of([original], 1))
    stored = await history.stored(pfx)

    # Across streams (detected by the database) ...
    response = await history.ingest(batches_of([drug(pfx + "B", ins, ago(days=1)), changed], 2))
    assert (response.accepted_count, response.rejected_count) == (1, 1)
    rejection = response.rejections[0]
    assert (rejection.line_id, rejection.reason) == (pfx + "A", "LINE_ID_CONFLICT")
    assert (rejection.batch_index, rejection.line_index) == (0, 1)
    # ... and within one stream (detected before writing).
    twin = drug(pfx + "C", ins, ago(days=2))
    other = drug(pfx + "C", ins, ago(days=2), billed=999)
    response = await history.ingest(batches_of([twin, other], 1))
    assert (response.accepted_count, response.rejected_count) == (1, 1)
    assert response.rejections[0].reason == "LINE_ID_CONFLICT"
    assert response.rejections[0].batch_index == 1

    after = await history.stored(pfx)
    assert after[pfx + "A"] == stored[pfx + "A"]
    assert history_pb2.ClaimLine.FromString(after[pfx + "A"]).drug.quantity == 1
    assert history_pb2.ClaimLine.FromString(after[pfx + "C"]).billed_amount_cents == 466


async def test_partial_replay_then_new_lines_in_one_stream(history: HistoryClient) -> None:
    """Batches meeting stored ids are merged, later fresh batches go back to plain COPY."""
    pfx = prefix()
    lines = synthetic(90, pfx)
    first = await history.ingest(batches_of(lines[:35], 10))
    assert first.accepted_count == 35
    # Batch 3 mixes 5 stored and 5 new ids; batches 4-9 are all new.
    again = await history.ingest(batches_of(lines, 10))
    assert (again.accepted_count, again.duplicate_count, again.rejected_count) == (55, 35, 0)
    assert len(await history.stored(pfx)) == 90


async def test_conflict_in_a_batch_taken_for_new_keeps_the_rest(history: HistoryClient) -> None:
    pfx = prefix()
    ins = new_ins()
    await history.ingest(batches_of([drug(pfx + "A", ins, ago(days=4), quantity=1)], 1))
    fresh = [drug(f"{pfx}n{i}", ins, ago(days=3)) for i in range(9)]
    changed = drug(pfx + "A", ins, ago(days=4), quantity=3)
    response = await history.ingest(batches_of([*fresh[:4], changed, *fresh[4:]], 10))
    assert (response.accepted_count, response.duplicate_count, response.rejected_count) == (
        9,
        0,
        1,
    )
    rejection = response.rejections[0]
    assert (rejection.line_id, rejection.reason, rejection.line_index) == (
        pfx + "A",
        "LINE_ID_CONFLICT",
        4,
    )
    stored = await history.stored(pfx)
    assert len(stored) == 10
    assert history_pb2.ClaimLine.FromString(stored[pfx + "A"]).drug.quantity == 1


async def test_conflict_across_committed_batches_of_one_stream_keeps_the_first(
    history: HistoryClient,
) -> None:
    """Batches written ahead still commit in stream order: the earlier version wins."""
    pfx = prefix()
    ins = new_ins()
    first = [drug(f"{pfx}a{i}", ins, ago(days=6)) for i in range(10)]
    second = [drug(f"{pfx}b{i}", ins, ago(days=5)) for i in range(10)]
    second[7] = drug(f"{pfx}a3", ins, ago(days=6), quantity=4)
    third = [drug(f"{pfx}c{i}", ins, ago(days=4)) for i in range(10)]
    response = await history.ingest(batches_of([*first, *second, *third], 10))
    assert (response.accepted_count, response.duplicate_count, response.rejected_count) == (
        29,
        0,
        1,
    )
    rejection = response.rejections[0]
    assert (rejection.line_id, rejection.reason) == (pfx + "a3", "LINE_ID_CONFLICT")
    assert (rejection.batch_index, rejection.line_index) == (1, 7)
    stored = await history.stored(pfx)
    assert len(stored) == 29
    assert history_pb2.ClaimLine.FromString(stored[pfx + "a3"]).drug.quantity == 1


async def test_concurrent_streams_of_the_same_lines_store_each_once(
    history: HistoryClient,
) -> None:
    pfx = prefix()
    lines = synthetic(60, pfx)
    first, second = await asyncio.gather(
        history.ingest(batches_of(lines, 10)), history.ingest(batches_of(lines, 10))
    )
    assert first.accepted_count + second.accepted_count == 60
    assert first.duplicate_count + second.duplicate_count == 60
    assert first.rejected_count == second.rejected_count == 0
    assert len(await history.stored(pfx)) == 60


async def test_bad_lines_rejected_with_reasons_good_ones_kept(history: HistoryClient) -> None:
    pfx = prefix()
    ins = new_ins()
    good = drug(pfx + "ok", ins, ago(days=5))
    unknown_ins = drug(pfx + "ins", "185057123456799", ago(days=5))
    malformed_ins = drug(pfx + "ins2", "NOT-AN-INS", ago(days=5))
    bad_cip = drug(pfx + "cip", ins, ago(days=5))
    bad_cip.drug.cip13 = "3400930064910"
    bad_atc = drug(pfx + "atc", ins, ago(days=5), atc="C9")
    negative = drug(pfx + "neg", ins, ago(days=5), billed=-100)
    future = drug(pfx + "fut", ins, ago(days=-3))
    no_quantity = drug(pfx + "qty", ins, ago(days=5), quantity=0)
    no_details = history_pb2.ClaimLine(line_id=pfx + "none", patient_ins=ins)
    no_details.care_date.CopyFrom(pdate(ago(days=5)))
    no_id = drug("", ins, ago(days=5))
    lines = [good, unknown_ins, malformed_ins, bad_cip, bad_atc, negative, future, no_quantity,
             no_details, no_id]  # fmt: skip
    response = await history.ingest(batches_of(lines, 4))
    assert (response.accepted_count, response.rejected_count) == (1, 9)
    reasons = [(r.line_id, r.reason) for r in response.rejections]
    assert reasons == [
        (pfx + "ins", "INVALID_INS"),
        (pfx + "ins2", "INVALID_INS"),
        (pfx + "cip", "INVALID_CODE"),
        (pfx + "atc", "INVALID_CODE"),
        (pfx + "neg", "INVALID_AMOUNT"),
        (pfx + "fut", "INVALID_CARE_DATE"),
        (pfx + "qty", "INVALID_QUANTITY"),
        (pfx + "none", "MISSING_DETAILS"),
        ("", "MISSING_LINE_ID"),
    ]
    assert all(r.detail for r in response.rejections)
    assert "NOT-AN-INS" not in str(response)  # details never echo values
    assert [(r.batch_index, r.line_index) for r in response.rejections][:2] == [(0, 1), (0, 2)]
    assert set(await history.stored(pfx)) == {pfx + "ok"}


async def _expect_stream_error(
    history: HistoryClient,
    requests: list[history_pb2.IngestClaimsRequest],
    code: grpc.StatusCode,
    reason: str,
    principal: object = None,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await history.ingest(requests, principal)  # type: ignore[arg-type]
    assert caught.value.code() == code
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == reason
    assert info.domain == "history_feed.dmp"


async def test_empty_stream(history: HistoryClient) -> None:
    await _expect_stream_error(history, [], grpc.StatusCode.INVALID_ARGUMENT, "EMPTY_STREAM")


async def test_oversized_batch_writes_nothing(history: HistoryClient) -> None:
    pfx = prefix()
    lines = synthetic(MAX_LINES_PER_MESSAGE + 1, pfx)
    requests = batches_of(lines, MAX_LINES_PER_MESSAGE + 1)
    await _expect_stream_error(
        history, requests, grpc.StatusCode.INVALID_ARGUMENT, "BATCH_TOO_LARGE"
    )
    assert await history.stored(pfx) == {}


async def test_empty_message_and_missing_request_id_write_nothing(history: HistoryClient) -> None:
    pfx = prefix()
    empty = history_pb2.IngestClaimsRequest(request_id="r-1")
    await _expect_stream_error(history, [empty], grpc.StatusCode.INVALID_ARGUMENT, "EMPTY_BATCH")
    anonymous = history_pb2.IngestClaimsRequest(lines=synthetic(5, pfx))
    await _expect_stream_error(
        history, [anonymous], grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REQUIRED"
    )
    too_long = history_pb2.IngestClaimsRequest(request_id="r" * 65, lines=synthetic(5, pfx))
    await _expect_stream_error(
        history, [too_long], grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_INVALID"
    )
    assert await history.stored(pfx) == {}


@pytest.mark.parametrize(
    ("principal", "reason"),
    [
        (principals.professional("10000000002"), "PRINCIPAL_KIND_NOT_ALLOWED"),
        (principals.patient("185057000001102"), "PRINCIPAL_KIND_NOT_ALLOWED"),
        (principals.service("other-service", ("guichet_amo",)), "AMO_FEEDER_ONLY"),
    ],
)
async def test_only_the_amo_feeder_writes(
    history: HistoryClient, principal: object, reason: str
) -> None:
    pfx = prefix()
    await _expect_stream_error(
        history,
        batches_of(synthetic(3, pfx), 3),
        grpc.StatusCode.PERMISSION_DENIED,
        reason,
        principal,
    )
    assert await history.stored(pfx) == {}


async def test_unauthenticated_ingest_refused(history: HistoryClient) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await history.stub.IngestClaims(_once(batches_of(synthetic(2, prefix()), 2)))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def _once(
    requests: list[history_pb2.IngestClaimsRequest],
) -> AsyncIterator[history_pb2.IngestClaimsRequest]:
    for request in requests:
        yield request


async def test_cut_stream_keeps_committed_batches_and_resend_completes(
    history: HistoryClient,
) -> None:
    pfx = prefix()
    lines = synthetic(100, pfx)
    requests = batches_of(lines, 10)  # one message = one committed batch here
    sent_five = asyncio.Event()
    hold = asyncio.Event()

    async def cut_after_five() -> AsyncIterator[history_pb2.IngestClaimsRequest]:
        for index, request in enumerate(requests):
            if index == 5:
                sent_five.set()
                await hold.wait()  # never set: the call is cancelled here
            yield request

    ended = finished_calls("history_feed", INGEST)
    call = history.ingest_call(cut_after_five())
    await sent_five.wait()

    async def four_batches() -> bool:  # they commit while the fifth is written
        return len(await history.stored(pfx)) >= 40

    await until(four_batches, "the first four batches committed")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # The server's handler has ended, the batches it had handed over written or not.
    await until(lambda: finished_calls("history_feed", INGEST) > ended, "the cut call ended")
    committed = await history.stored(pfx)
    assert 40 <= len(committed) <= 50
    assert len(committed) % 10 == 0  # whole batches only

    response = await history.ingest(requests)
    assert response.accepted_count == 100 - len(committed)
    assert response.duplicate_count == len(committed)
    assert len(await history.stored(pfx)) == 100


async def test_stream_error_after_committed_batches_keeps_them(history: HistoryClient) -> None:
    pfx = prefix()
    good = batches_of(synthetic(30, pfx), 10)
    oversized = batches_of(synthetic(MAX_LINES_PER_MESSAGE + 1, pfx + "x"), 100)
    await _expect_stream_error(
        history, [*good, *oversized], grpc.StatusCode.INVALID_ARGUMENT, "BATCH_TOO_LARGE"
    )
    stored = await history.stored(pfx)
    assert len(stored) == 30  # the three batches before the bad message are committed
    assert not any(key.startswith(pfx + "x") for key in stored)


async def test_receive_time_sent_by_client_is_ignored(history: HistoryClient) -> None:
    pfx = prefix()
    line = drug(pfx + "rt", new_ins(), ago(days=1))
    line.receive_time.FromSeconds(1)
    await history.ingest(batches_of([line], 1))
    line.ClearField("receive_time")
    again = await history.ingest(batches_of([line], 1))
    assert again.duplicate_count == 1


async def test_rejections_list_is_bounded(history: HistoryClient) -> None:
    history.app.history_settings.history_max_rejections = 3
    try:
        bad = [drug(f"{prefix()}{i}", "123", ago(days=1)) for i in range(7)]
        response = await history.ingest(batches_of(bad, 7))
    finally:
        history.app.history_settings.history_max_rejections = 10_000
    assert response.rejected_count == 7
    assert len(response.rejections) == 3
    assert response.rejections_truncated


def test_dates_helper_sanity() -> None:
    assert ago(days=1) < ago()
    assert ago(months=1) + timedelta(days=31) >= ago()
