"""Idempotency keys (AIP-155): a retried mutation gets the original response.

Responses that held a secret (tokens, codes) are not kept, so their retries
get FAILED_PRECONDITION REQUEST_ALREADY_PROCESSED: the client starts again
with a new request id. A request id is bound to its method and caller.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kit.errors import ServiceError, failed_precondition, invalid_argument
from services.identity.models import processed_requests

M = TypeVar("M", bound=Message)
ANONYMOUS = "anonymous"


async def replay(
    db: AsyncSession, request_id: str, method: str, caller: str, response_type: type[M]
) -> M | None:
    """The stored response of an already processed request, or None if it is new."""
    row = (
        await db.execute(
            select(
                processed_requests.c.method,
                processed_requests.c.caller,
                processed_requests.c.response,
            ).where(processed_requests.c.request_id == request_id)
        )
    ).one_or_none()
    if row is None:
        return None
    if row.method != method or row.caller != caller[:64]:
        raise invalid_argument(
            "REQUEST_ID_REUSED", "This request_id was used for another request.", "request_id"
        )
    if row.response is None:
        raise failed_precondition(
            "REQUEST_ALREADY_PROCESSED",
            "This request was already processed; start again with a new request_id.",
        )
    return response_type.FromString(row.response)


async def remember(
    db: AsyncSession,
    request_id: str,
    method: str,
    caller: str,
    response: Message | None,
    *,
    now: datetime,
) -> None:
    """Record the request in the caller's transaction; a concurrent twin gets ABORTED.

    The error aborts the whole transaction, which is what the twin needs: nothing
    of it is written.
    """
    try:
        await db.execute(
            processed_requests.insert().values(
                request_id=request_id,
                method=method,
                caller=caller[:64],
                response=None
                if response is None
                else response.SerializeToString(deterministic=True),
                created_at=now,
            )
        )
    except IntegrityError as exc:
        raise ServiceError(
            grpc.StatusCode.ABORTED,
            "REQUEST_IN_PROGRESS",
            "The same request is being processed; retry later.",
        ) from exc
