"""Between aware `datetime`s (columns) and `google.protobuf.Timestamp` fields."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def ts(value: datetime | None, target: Timestamp) -> None:
    """Set `target` from `value`; leave it unset for None."""
    if value is not None:
        target.FromDatetime(value)


def to_dt(message: Timestamp) -> datetime:
    return datetime.fromtimestamp(message.seconds + message.nanos / 1e9, tz=UTC)
