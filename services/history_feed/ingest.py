"""One IngestClaims run: validate lines as they stream in, commit them in batches.

Memory stays flat whatever the stream length: one batch is being filled
while at most `history_write_ahead_batches` filled ones are written, one
after the other in stream order (writes overlap the reading and checking of
the next messages; a full chain stops reading, which pushes back on the
feeder through HTTP/2 flow control), and only counters and the first
rejections are kept. A stream cut mid-way keeps every batch already handed to
the chain and loses only the lines still being accumulated; re-sending the
stream completes it, committed lines counting as duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from dmp.history.v1 import history_pb2
from kit import clock
from kit.errors import invalid_argument
from kit.idempotency import check_request_id
from kit.logs import get_logger
from services.history_feed.settings import HistoryFeedSettings
from services.history_feed.validation import MAX_LINE_BYTES, LineChecker, LineError
from services.history_feed.writers import BatchOutcome, ClaimRow, ClaimWriter

log = get_logger(__name__)

PARIS = ZoneInfo("Europe/Paris")


def _clear_output_only(line: history_pb2.ClaimLine) -> None:
    """What GetCareHistory fills is never taken from the feeder (nor part of a line's hash)."""
    for name in ("receive_time", "prescriber_display", "performer_display", "vaccination"):
        line.ClearField(name)


def today_in_france() -> date:
    """Dates of care are French calendar dates: 'the future' starts at Paris midnight."""
    return clock.now().astimezone(PARIS).date()


class IngestRun:
    """Counters, the batch being filled and the batch being written."""

    def __init__(self, writer: ClaimWriter, settings: HistoryFeedSettings) -> None:
        self._writer = writer
        self._commit_lines = settings.history_commit_batch_lines
        self._max_lines = settings.history_max_lines_per_message
        self._max_rejections = settings.history_max_rejections
        self._checker = LineChecker(today_in_france())
        self.ingest_id = uuid.uuid4().hex
        self.response = history_pb2.IngestClaimsResponse(ingest_id=self.ingest_id)
        self._rows: list[ClaimRow] = []
        # line id -> (content hash, batch index, line index) of the batch being filled
        self._positions: dict[str, tuple[bytes, int, int]] = {}
        self._write_ahead = settings.history_write_ahead_batches
        # Write tasks in stream order, each awaiting the previous one.
        self._pending: deque[asyncio.Task[None]] = deque()
        # Until a batch meets stored ids, lines are taken for new: the writer's fast path.
        self._expect_new = True
        self.merged_batches = 0

    def _reject(self, line_id: str, batch: int, index: int, reason: str, detail: str) -> None:
        self.response.rejected_count += 1
        if len(self.response.rejections) >= self._max_rejections:
            self.response.rejections_truncated = True
            return
        self.response.rejections.add(
            line_id=line_id, batch_index=batch, line_index=index, reason=reason, detail=detail
        )

    def _check_message(self, request: history_pb2.IngestClaimsRequest) -> None:
        count = len(request.lines)
        if count == 0:
            raise invalid_argument("EMPTY_BATCH", "A stream message must carry lines.", "lines")
        if count > self._max_lines:
            raise invalid_argument(
                "BATCH_TOO_LARGE",
                f"A stream message carries at most {self._max_lines} lines.",
                "lines",
            )
        # A UUID per message (kit.idempotency's rule), for tracing: the lines themselves
        # are idempotent per line_id.
        check_request_id(request.request_id)

    async def add(self, request: history_pb2.IngestClaimsRequest) -> None:
        """Check one stream message and queue its valid lines.

        The lines are taken in slices with a pass through the event loop in
        between: the batch being written needs a few database round trips,
        and a whole message checked in one go (~10 ms of CPU, far more on a
        busy machine) would leave the database idle that long at each one.
        """
        self._check_message(request)
        batch = int(self.response.batch_count)
        self.response.batch_count += 1
        received = clock.now()
        lines = request.lines
        for start in range(0, len(lines), _SLICE_LINES):
            self._take(lines[start : start + _SLICE_LINES], batch, start, received)
            await asyncio.sleep(0)
        if len(self._rows) >= self._commit_lines:
            await self.flush()

    def _take(
        self,
        lines: Sequence[history_pb2.ClaimLine],
        batch: int,
        offset: int,
        received: datetime,
    ) -> None:
        """The hot loop: check, serialize, hash, de-duplicate within the batch."""
        check = self._checker.check
        rows_append = self._rows.append
        positions = self._positions
        duplicates = 0
        for index, line in enumerate(lines, offset):
            try:
                line_id, ins, care, kind, atc = check(line)
            except LineError as exc:
                self._reject(line.line_id, batch, index, exc.reason, exc.detail)
                continue
            if (
                line.HasField("receive_time")
                or line.HasField("prescriber_display")
                or line.HasField("performer_display")
                or line.vaccination
            ):
                _clear_output_only(line)
            payload = line.SerializeToString(deterministic=True)
            if len(payload) > MAX_LINE_BYTES:
                self._reject(line_id, batch, index, "LINE_TOO_LARGE", "The line exceeds 8 KiB.")
                continue
            digest = _hash(payload, digest_size=16).digest()
            seen = positions.get(line_id)
            if seen is not None:
                if seen[0] == digest:
                    duplicates += 1
                else:
                    self._reject(line_id, batch, index, "LINE_ID_CONFLICT", _CONFLICT)
                continue
            positions[line_id] = (digest, batch, index)
            rows_append((line_id, ins, care, kind, atc, digest, payload, received))
        self.response.duplicate_count += duplicates

    async def flush(self) -> None:
        """Hand the filled batch to the write chain; wait while it is full (backpressure)."""
        if not self._rows:
            return
        while len(self._pending) >= self._write_ahead:
            await asyncio.shield(self._pending[0])
            self._pending.popleft()
        rows, positions = self._rows, self._positions
        self._rows, self._positions = [], {}
        previous = self._pending[-1] if self._pending else None
        self._pending.append(asyncio.create_task(self._write(previous, rows, positions)))

    async def wait_written(self) -> None:
        """Wait for every handed batch; a cancelled caller never cancels a write."""
        while self._pending:
            await asyncio.shield(self._pending[0])
            self._pending.popleft()

    async def _write(
        self,
        previous: asyncio.Task[None] | None,
        rows: list[ClaimRow],
        positions: dict[str, tuple[bytes, int, int]],
    ) -> None:
        """Batches commit one after the other, in stream order; a failed one stops the chain."""
        if previous is not None:
            await previous
        outcome: BatchOutcome = await self._writer.write(rows, expect_new=self._expect_new)
        self._expect_new = outcome.accepted == len(rows)
        self.merged_batches += outcome.merged
        self.response.accepted_count += outcome.accepted
        self.response.duplicate_count += outcome.duplicates
        for line_id in outcome.conflicts:
            _, batch, index = positions[line_id]
            self._reject(line_id, batch, index, "LINE_ID_CONFLICT", _CONFLICT)

    async def abandon(self) -> None:
        """On a cut stream or a stream error: the batches already handed over still commit."""
        for task in self._pending:
            with contextlib.suppress(Exception):
                await task
        self._pending.clear()
        self._rows, self._positions = [], {}


_CONFLICT = "This line_id was already received with different content; the first is kept."
_hash = hashlib.blake2b
#: Lines checked between two passes through the event loop (~1 ms of CPU).
_SLICE_LINES = 128


async def run_ingest(
    requests: AsyncIterator[history_pb2.IngestClaimsRequest],
    writer: ClaimWriter,
    settings: HistoryFeedSettings,
) -> history_pb2.IngestClaimsResponse:
    """Consume the whole stream; the response counts every line of it."""
    run = IngestRun(writer, settings)
    try:
        async for request in requests:
            await run.add(request)
        if run.response.batch_count == 0:
            raise invalid_argument("EMPTY_STREAM", "The stream carried no message.")
        await run.flush()
        await run.wait_written()
    except BaseException:
        await asyncio.shield(run.abandon())
        raise
    response = run.response
    if response.rejections:
        # Conflicts found by the database arrive after later lines' rejections.
        response.rejections.sort(key=lambda r: (r.batch_index, r.line_index))
    log.info(
        "ingest_done",
        ingest_id=run.ingest_id,
        batches=response.batch_count,
        accepted=response.accepted_count,
        duplicates=response.duplicate_count,
        rejected=response.rejected_count,
        merged_batches=run.merged_batches,
    )
    return response
