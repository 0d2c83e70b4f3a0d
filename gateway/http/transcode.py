"""JSON ⇄ proto for the door, with protobuf's own converter (`google.protobuf.json_format`).

A request is built from three parts, as Google's HTTP transcoding does: the
body (the whole request for `body: "*"`, one field otherwise), the query
parameters (any other field, by its JSON or proto name, dotted for nested
fields, repeated by repetition) and the path variables, which win. Unknown
fields are refused, whatever part names them. Answers are proto3 JSON; errors
are the JSON form of the `google.rpc.Status` the gRPC edge would send, with the
standard gRPC → HTTP status mapping.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

from gateway.http.rules import HttpRoute
from kit.errors import ServiceError, invalid_argument

# Registers google.rpc.ErrorInfo, RetryInfo, BadRequest in the default pool (Any → JSON).
from google.rpc import error_details_pb2  # isort: skip

DETAILS_KEY = "grpc-status-details-bin"
#: google.rpc.Code → HTTP status (google/rpc/code.proto, as Google's transcoders map it).
HTTP_STATUS: dict[int, int] = {
    code_pb2.OK: 200,
    code_pb2.CANCELLED: 499,
    code_pb2.UNKNOWN: 500,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.ABORTED: 409,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.INTERNAL: 500,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DATA_LOSS: 500,
}
#: Door refusals whose HTTP status says more than the code's mapping.
HTTP_STATUS_BY_REASON = {"BODY_TOO_LARGE": 413, "HTTP_METHOD_NOT_ALLOWED": 405}
_MAX_ERROR_TEXT = 200


def _json_invalid(exc: Exception) -> ServiceError:
    # json_format's text names the field and the expected type; it never reaches the logs.
    text = str(exc)[:_MAX_ERROR_TEXT]
    return invalid_argument("INVALID_REQUEST_FIELDS", f"The JSON does not fit the request: {text}")


def parse_body(raw: bytes) -> Any:
    """The JSON value of a body; INVALID_ARGUMENT JSON_MALFORMED when it is not JSON."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_argument("JSON_MALFORMED", "The request body is not valid JSON.") from exc


def _field(descriptor: Any, name: str) -> FieldDescriptor | None:
    found: FieldDescriptor | None = descriptor.fields_by_name.get(name)
    if found is not None:
        return found
    for field in descriptor.fields:
        if field.json_name == name:
            found = field
    return found


def _set(tree: dict[str, Any], descriptor: Any, dotted: str, values: list[str]) -> None:
    """Put query values for `dotted` into `tree` (json_format.ParseDict input)."""
    parts = dotted.split(".")
    node = tree
    for i, part in enumerate(parts):
        field = _field(descriptor, part)
        if field is None:
            raise invalid_argument(
                "INVALID_REQUEST_FIELDS", f"Unknown query parameter {dotted[:64]!r}."
            )
        last = i == len(parts) - 1
        if not last:
            if field.type != FieldDescriptor.TYPE_MESSAGE or field.is_repeated:
                raise invalid_argument(
                    "INVALID_REQUEST_FIELDS", f"Unknown query parameter {dotted[:64]!r}."
                )
            node = node.setdefault(field.name, {})
            descriptor = field.message_type
            continue
        converted = [_scalar(field, v) for v in values]
        if field.is_repeated:
            node[field.name] = converted
        elif len(converted) > 1:
            raise invalid_argument(
                "INVALID_REQUEST_FIELDS", f"Query parameter {dotted[:64]!r} is not repeated."
            )
        else:
            node[field.name] = converted[0]


def _scalar(field: FieldDescriptor, value: str) -> Any:
    if field.type == FieldDescriptor.TYPE_BOOL:
        if value not in ("true", "false"):
            raise invalid_argument("INVALID_REQUEST_FIELDS", f"{field.name} takes true or false.")
        return value == "true"
    # Strings for the rest: json_format reads numbers, enums, Timestamps, FieldMasks from them.
    return value


def build_request(
    route: HttpRoute, variables: Mapping[str, str], query: Iterable[tuple[str, str]], body: Any
) -> Message:
    """The request message of `route` (INVALID_ARGUMENT with a reason on bad input)."""
    request_class = route.route.request_class
    request = request_class()
    _parse_body(route, request, body)
    tree = _query_tree(route, request.DESCRIPTOR, query)
    for dotted, raw in variables.items():
        _set(tree, request.DESCRIPTOR, dotted, [urllib.parse.unquote(raw)])
    if tree:
        extra = request_class()
        try:
            json_format.ParseDict(tree, extra, ignore_unknown_fields=False)
        except (json_format.ParseError, ValueError, TypeError) as exc:
            raise _json_invalid(exc) from exc
        request.MergeFrom(extra)  # path variables and query values win over the body
    return request


def _parse_body(route: HttpRoute, request: Message, body: Any) -> None:
    if not route.body:
        if body != {}:
            raise invalid_argument("INVALID_REQUEST_FIELDS", "This route takes no request body.")
        return
    target = request if route.body == "*" else getattr(request, route.body)
    if not isinstance(body, dict):
        raise invalid_argument("INVALID_REQUEST_FIELDS", "The request body must be a JSON object.")
    try:
        json_format.ParseDict(body, target, ignore_unknown_fields=False)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise _json_invalid(exc) from exc


def _query_tree(
    route: HttpRoute, descriptor: Any, query: Iterable[tuple[str, str]]
) -> dict[str, Any]:
    grouped: dict[str, list[str]] = {}
    for key, value in query:
        grouped.setdefault(key, []).append(value)
    if grouped and route.body == "*":
        raise invalid_argument(
            "INVALID_REQUEST_FIELDS", "This route takes its fields in the body, not the query."
        )
    tree: dict[str, Any] = {}
    for key, values in grouped.items():
        if route.body and key.split(".")[0] in (route.body, _json_name(descriptor, route.body)):
            raise invalid_argument(
                "INVALID_REQUEST_FIELDS", f"{key[:64]!r} belongs in the request body."
            )
        _set(tree, descriptor, key, values)
    return tree


def _json_name(descriptor: Any, name: str) -> str:
    field = descriptor.fields_by_name.get(name)
    return field.json_name if field is not None else name


def response_json(response_class: type[Message], payload: bytes) -> bytes:
    """proto3 JSON of an upstream answer (its bytes as the service sent them)."""
    message = response_class.FromString(payload)
    return message_json(message)


def message_json(message: Message) -> bytes:
    return json.dumps(
        json_format.MessageToDict(message), separators=(",", ":"), ensure_ascii=False
    ).encode()


def status_json(status: grpc.Status) -> tuple[int, bytes]:
    """(HTTP status, google.rpc.Status JSON) of a gRPC status (with its details if any)."""
    code = status.code.value[0]
    rich = status_pb2.Status(code=code, message=status.details or "")
    for key, value in status.trailing_metadata or ():
        if key == DETAILS_KEY and isinstance(value, bytes):
            rich = status_pb2.Status.FromString(value)
            break
    reason = ""
    for detail in rich.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
            break
    http = HTTP_STATUS_BY_REASON.get(reason) or HTTP_STATUS.get(rich.code, 500)
    return http, message_json(rich)
