"""Operator access to notify's dead letters (`dmp notify dlq list|replay`).

Dead letters live on `dmp.notify.deadletter.<source>` in notify's own stream
(DMP_NOTIFY, kept as long as the stream's max age): the source event as it
was, with `Dmp-Original-Subject` and, for delivery failures, the notification
id and error code. Replaying one republishes it on
`dmp.notify.replay.<original subject>`, which notify consumes like the
original (failed notifications of that event are reset and attempted again),
then deletes the dead letter so that `list` shows what is still outstanding.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError, ServerError

from kit.nats import STREAMS
from services.notify.consumed import DEADLETTER_PREFIX, REPLAY_PREFIX, original_subject

__all__ = ["DEADLETTER_PREFIX", "DeadLetter", "list_dead", "replay"]

STREAM = STREAMS["notify"].name
ALL = DEADLETTER_PREFIX + ">"


@dataclass(frozen=True)
class DeadLetter:
    seq: int
    subject: str
    original_subject: str
    event_id: str
    reason: str
    error: str
    time: datetime | None
    data: bytes
    headers: dict[str, str]


def _filter(kind: str | None) -> str:
    return DEADLETTER_PREFIX + kind if kind else ALL


async def list_dead(
    js: JetStreamContext, *, kind: str | None = None, limit: int = 1000
) -> list[DeadLetter]:
    """Outstanding dead letters, oldest first (at most `limit`)."""
    found: list[DeadLetter] = []
    seq = 1
    subject = _filter(kind)
    while len(found) < limit:
        try:
            raw = await js.get_msg(STREAM, seq=seq, subject=subject, next=True)
        except NotFoundError:
            break
        headers = dict(raw.headers or {})
        original = original_subject(headers.get("Dmp-Original-Subject", ""))
        found.append(
            DeadLetter(
                seq=int(raw.seq or 0),
                subject=str(raw.subject),
                original_subject=original,
                event_id=headers.get("Dmp-Event-Id", ""),
                reason=headers.get("Dmp-Dead-Reason", "not_processed"),
                error=headers.get("Dmp-Error", ""),
                time=raw.time if isinstance(raw.time, datetime) else None,
                data=raw.data or b"",
                headers=headers,
            )
        )
        seq = int(raw.seq or seq) + 1
    return found


# JetStream's err_code of a delete whose message is already gone.
NO_MESSAGE_FOUND = 10057


async def replay(js: JetStreamContext, letter: DeadLetter) -> str:
    """Send one dead letter through notify again; returns the replay subject."""
    if not letter.original_subject:
        raise ValueError(f"dead letter {letter.seq} has no original subject")
    target = REPLAY_PREFIX + letter.original_subject
    headers = {
        k: v for k, v in letter.headers.items() if not k.startswith("Nats-") and k != "Dmp-Error"
    }
    headers["Dmp-Original-Subject"] = letter.original_subject
    # Same id for the same dead letter: replaying twice within the stream's
    # duplicate window publishes once.
    headers["Nats-Msg-Id"] = f"replay.{letter.seq}"
    await js.publish(target, letter.data, headers=headers)
    # Already replayed and removed (e.g. by another operator): nothing left to do. The server
    # may say so as a 500 with err_code 10057 ("no message found"), not only as a 404.
    try:
        await js.delete_msg(STREAM, letter.seq)
    except (NotFoundError, BadRequestError):
        pass
    except ServerError as exc:
        if exc.err_code != NO_MESSAGE_FOUND:
            raise
    return target
