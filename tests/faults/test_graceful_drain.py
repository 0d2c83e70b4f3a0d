"""Graceful shutdown (SIGTERM, what Kubernetes sends first) drains the calls in flight.

The platform runs as real processes, started by the launcher for the fault tests
(tests/faults/conftest.py).

- A claims stream (history_feed's client-streaming IngestClaims, the AMO's bulk feed) is
  open through the gateway when history_feed, then the gateway, receive SIGTERM. The test
  waits until the process has acted on the signal (its health turns NOT_SERVING or its port
  refuses new calls), only then sends the rest of the stream: the call must still complete
  OK with every line stored, and the process must exit on its own (code 0, not killed).
- A burst of uploads is in flight when records receives SIGTERM: each caller is told OK or
  UNAVAILABLE, and records holds exactly the documents whose callers were told OK: no call
  was cut after doing its work. (Calls records had received but not yet started when the
  signal came are dropped by grpc's server stop: the gateway answers those UNAVAILABLE, and
  their retry with the same request id does them once.) Everything recovers once records is
  started again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import func, select

from dmp.history.v1 import history_pb2, history_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from services.history_feed.models import claim_lines
from services.history_feed.synthetic import Generator
from tests.faults.harness import (
    ALLOWED_DURING_FAULT,
    CALL_TIMEOUT_S,
    CLAIM_COMMIT_LINES,
    Ledger,
    Platform,
    check_nothing_lost_or_doubled,
    settle,
)
from tests.fixtures import sql
from tests.waits import until

# One worker runs every fault test: they share the package's platform (`live`).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("faults")]

BATCHES = 6
LINES_PER_BATCH = CLAIM_COMMIT_LINES  # one commit per message
BURST = 24
R = records_pb2


async def stopped_serving(target: str) -> None:
    """Until `target` answers NOT_SERVING or refuses the call: SIGTERM has been acted on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while loop.time() < deadline:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.aio.AioRpcError:
                return
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                return
            await asyncio.sleep(0.02)
    raise AssertionError(f"{target} still SERVING 15 s after SIGTERM")


async def stored(live: LiveStack, batches: list[history_pb2.IngestClaimsRequest]) -> bool:
    """Whether history_feed has committed every line of `batches`."""
    ids = [line.line_id for batch in batches for line in batch.lines]
    rows = await sql.fetch(
        live.database_url("history_feed"),
        select(func.count()).select_from(claim_lines).where(claim_lines.c.line_id.in_(ids)),
    )
    return int(rows[0][0]) == len(ids)


def claim_batches(seed: int) -> list[history_pb2.IngestClaimsRequest]:
    generator = Generator(seed=seed, patients=50, prefix=f"D{uuid.uuid4().hex[:8]}-")
    lines = list(generator.lines(BATCHES * LINES_PER_BATCH))
    return [
        history_pb2.IngestClaimsRequest(
            lines=lines[i : i + LINES_PER_BATCH], request_id=str(uuid.uuid4())
        )
        for i in range(0, len(lines), LINES_PER_BATCH)
    ]


@pytest.mark.parametrize("victim", ["history_feed", "gateway"])
async def test_sigterm_drains_an_open_claims_stream(live: LiveStack, victim: str) -> None:
    batches = claim_batches(seed=len(victim))
    stub = history_pb2_grpc.HistoryFeedServiceStub(live.card_channel("amo"))
    call = stub.IngestClaims(timeout=60)
    await call.write(batches[0])
    await call.write(batches[1])
    # The stream is open at history_feed, behind the gateway: both batches are stored.
    await until(
        lambda: stored(live, batches[:2]),
        "the first batches stored",
        within_s=CALL_TIMEOUT_S,
    )

    process = live.dev.process(victim)
    # The gateway's own port is TLS; its plaintext probe port shares its health.
    target = f"127.0.0.1:{live.cfg.gateway_probe_port}" if victim == "gateway" else process.target
    stopping = asyncio.create_task(live.stop_service(victim))  # SIGTERM, then wait for the exit
    await stopped_serving(target)

    for batch in batches[2:]:
        await call.write(batch)
    await call.done_writing()
    response = await call
    assert response.batch_count == BATCHES
    assert response.accepted_count + response.duplicate_count == BATCHES * LINES_PER_BATCH
    assert response.rejected_count == 0
    await stopping
    assert process.exited() == 0, f"{victim} did not stop on its own"

    await live.start_service(victim)
    # The restarted platform serves the same stream again; every line is now a duplicate.
    again = await stub.IngestClaims(_iterate(batches), timeout=60)
    assert again.duplicate_count == BATCHES * LINES_PER_BATCH
    assert again.accepted_count == 0


async def _iterate(
    batches: list[history_pb2.IngestClaimsRequest],
) -> AsyncIterator[history_pb2.IngestClaimsRequest]:
    for batch in batches:
        yield batch


async def test_sigterm_lets_in_flight_uploads_finish(live: LiveStack) -> None:
    platform = Platform(live)
    patient = await platform.new_patient(0)
    ledger = Ledger()
    uploads = [platform.new_upload(patient, ledger) for _ in range(BURST)]
    # Large enough that records is busy with them (encryption, hashing, storage) when told.
    for upload in uploads:
        upload.request.document.content = upload.request.document.content * 20_000

    tasks = [asyncio.create_task(platform.attempt(u)) for u in uploads]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED, timeout=30)
    assert done, "no upload finished"
    process = live.dev.process("records")
    stopping = asyncio.create_task(live.stop_service("records"))
    await asyncio.gather(*tasks)
    await stopping
    assert process.exited() == 0, "records did not stop on its own"

    codes = ledger.codes()
    assert set(codes) <= ALLOWED_DURING_FAULT, (dict(codes), ledger.unexpected()[:5])
    told_ok = len(ledger.acknowledged())
    await live.start_service("records")
    listed = await platform.doctor.ListDocuments(
        R.ListDocumentsRequest(parent=patient.dossier, page_size=1), timeout=CALL_TIMEOUT_S
    )
    # A call cut after its commit would leave a document its caller was not told about.
    assert listed.total_size == told_ok, (listed.total_size, dict(codes))
    print(f"\nrecords SIGTERM during {BURST} uploads: { ({c.name: n for c, n in codes.items()}) }")
    await settle(platform, ledger)
    await check_nothing_lost_or_doubled(platform, ledger)
