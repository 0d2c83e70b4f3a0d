"""Settings of the history feed (`DMP_*` variables, e.g. `DMP_HISTORY_COMMIT_BATCH_LINES`)."""

from __future__ import annotations

from pydantic import Field

from kit.settings import ServiceSettings


class HistoryFeedSettings(ServiceSettings):
    """Batch sizes bound the memory of an ingest run whatever the stream length."""

    service_name: str = "history_feed"

    history_commit_batch_lines: int = Field(
        default=5000,
        ge=1,
        le=100_000,
        description="Lines committed per transaction; a cut stream keeps every committed batch.",
    )
    history_max_lines_per_message: int = Field(
        default=1000, ge=1, le=10_000, description="Most lines one IngestClaims message may carry."
    )
    history_write_ahead_batches: int = Field(
        default=2,
        ge=1,
        le=8,
        description=(
            "Filled batches that may wait for the database while the next one fills: "
            "absorbs jitter between validation and writes; memory is this many batches."
        ),
    )
    history_stream_lookahead_bytes: int = Field(
        default=4 << 20,
        ge=64 << 10,
        le=64 << 20,
        description=(
            "HTTP/2 window the server grants each stream: with the 64 KiB default a feeder "
            "stalls for window updates several times per 1000-line message."
        ),
    )
    history_max_rejections: int = Field(
        default=10_000, ge=0, description="Most per-line rejections listed in a response."
    )
    history_window_months: int = Field(
        default=24, ge=1, le=120, description="Months of history a record exposes."
    )
    history_max_lines_per_read: int = Field(
        default=20_000,
        ge=1,
        description="Most lines GetCareHistory loads for one record (a safety bound).",
    )
    history_consume_dossier_events: bool = Field(
        default=True,
        description="Consume dmp.records.dossier.created to backfill new records.",
    )
    history_consumer_durable: str = Field(
        default="history_feed_dossier_created", description="JetStream durable consumer name."
    )
    identity_target: str = Field(
        default="",
        description="identity's address, to show professionals' names (empty: the ids stay).",
    )
    records_target: str = Field(
        default="",
        description="records' address, to link vaccine lines to the vaccination book.",
    )
