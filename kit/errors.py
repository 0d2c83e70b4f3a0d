"""Errors as `google.rpc.Status` with an `ErrorInfo` detail (AIP-193).

Handlers raise `ServiceError`; the server interceptor turns it into a rich
status. Anything else becomes INTERNAL without leaking the exception text,
because exception messages may carry medical content.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


class ServiceError(Exception):
    """An expected failure with a precise status code and a machine-readable reason."""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
        retry_after_s: float | None = None,
        field_violations: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        self.retry_after_s = retry_after_s
        self.field_violations = dict(field_violations or {})

    def to_status(self, domain: str) -> grpc.Status:
        """Build the rich status sent on the wire."""
        details: list[any_pb2.Any] = []
        info = any_pb2.Any()
        info.Pack(
            error_details_pb2.ErrorInfo(reason=self.reason, domain=domain, metadata=self.metadata)
        )
        details.append(info)
        if self.field_violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in self.field_violations.items()
                ]
            )
            packed = any_pb2.Any()
            packed.Pack(bad)
            details.append(packed)
        if self.retry_after_s is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(self.retry_after_s * 1e9))
            packed = any_pb2.Any()
            packed.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
            details.append(packed)
        status = status_pb2.Status(
            code=_CODE_VALUES[self.code], message=self.message, details=details
        )
        return rpc_status.to_status(status)


_CODE_VALUES: dict[grpc.StatusCode, int] = {sc: sc.value[0] for sc in grpc.StatusCode}
assert _CODE_VALUES[grpc.StatusCode.INVALID_ARGUMENT] == code_pb2.INVALID_ARGUMENT
_CODES_BY_VALUE: dict[int, grpc.StatusCode] = {v: sc for sc, v in _CODE_VALUES.items()}


def status_code(value: int, default: grpc.StatusCode) -> grpc.StatusCode:
    """The gRPC code of a numeric `google.rpc.Code` (decisions and aborts carry numbers)."""
    return _CODES_BY_VALUE.get(value, default)


def invalid_argument(reason: str, message: str, field: str | None = None) -> ServiceError:
    """INVALID_ARGUMENT with an optional BadRequest field violation."""
    violations = {field: message} if field else None
    return ServiceError(
        grpc.StatusCode.INVALID_ARGUMENT, reason, message, field_violations=violations
    )


def unauthenticated(reason: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAUTHENTICATED, reason, message)


def permission_denied(reason: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.PERMISSION_DENIED, reason, message)


def not_found(reason: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.NOT_FOUND, reason, message)


def already_exists(reason: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.ALREADY_EXISTS, reason, message)


def failed_precondition(reason: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.FAILED_PRECONDITION, reason, message)


def resource_exhausted(reason: str, message: str, retry_after_s: float) -> ServiceError:
    return ServiceError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, reason, message, retry_after_s=retry_after_s
    )


def unavailable(reason: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.UNAVAILABLE, reason, message)


def error_info(error: grpc.aio.AioRpcError | grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """Client side: extract the ErrorInfo detail of a failed call, if any."""
    status = rpc_status.from_call(error)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None
