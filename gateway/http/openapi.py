"""OpenAPI 3 of the JSON door, generated from the same descriptors and http rules as its routes.

Schemas follow the proto3 JSON mapping json_format applies: lowerCamelCase
names, 64-bit integers as strings, enums as their names, bytes as base64,
Timestamp/Duration/FieldMask as strings. One document, built the same way at
start (served at `/v1/openapi.json`) and by `make gen` (docs/openapi.json), so
the file in the repository is the one the door serves.
"""

from __future__ import annotations

import json
import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.rpc import status_pb2

from gateway.http.rules import VARIABLE, HttpRoute
from gateway.http.session import ACCESS_COOKIE, CSRF_HEADER

F = FieldDescriptor
_SCALARS: dict[int, dict[str, Any]] = {
    F.TYPE_STRING: {"type": "string"},
    F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_BYTES: {"type": "string", "format": "byte"},
    F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    F.TYPE_FLOAT: {"type": "number", "format": "float"},
    F.TYPE_INT32: {"type": "integer", "format": "int32"},
    F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    F.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    F.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    F.TYPE_INT64: {"type": "string", "format": "int64"},
    F.TYPE_SINT64: {"type": "string", "format": "int64"},
    F.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    F.TYPE_UINT64: {"type": "string", "format": "uint64"},
    F.TYPE_FIXED64: {"type": "string", "format": "uint64"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated paths."},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
}
STATUS = "google.rpc.Status"


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, descriptor: Any) -> dict[str, Any]:
        known = _WELL_KNOWN.get(descriptor.full_name)
        if known is not None:
            return dict(known)
        name = descriptor.full_name
        if name not in self.components:
            self.components[name] = {}  # placeholder: recursive messages
            self.components[name] = self._message(descriptor)
        return {"$ref": f"#/components/schemas/{name}"}

    def _message(self, descriptor: Any) -> dict[str, Any]:
        properties = {f.json_name: self.field(f) for f in descriptor.fields}
        return {"type": "object", "properties": properties, "additionalProperties": False}

    def field(self, field: Any) -> dict[str, Any]:
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            value = message.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.single(value)}
        single = self.single(field)
        return {"type": "array", "items": single} if field.is_repeated else single

    def single(self, field: Any) -> dict[str, Any]:
        if field.type in (F.TYPE_MESSAGE, F.TYPE_GROUP):
            return self.ref(field.message_type)
        if field.type == F.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        return dict(_SCALARS[field.type])


def openapi_path(template: str) -> tuple[str, list[str]]:
    """An http rule's template as an OpenAPI path and its parameter names: each `*` is named
    after the collection before it (`/v1/{name=dossiers/*/documents/*}:replace` →
    `/v1/dossiers/{dossier}/documents/{document}:replace`)."""
    names: list[str] = []

    def variable(match: re.Match[str]) -> str:
        parts = (match.group(2) or match.group(1)).split("/")
        out = []
        for i, part in enumerate(parts):
            if part in ("*", "**"):
                collection = parts[i - 1] if i else match.group(1).split(".")[-1]
                name = _singular(collection)
                names.append(name)
                out.append(f"{{{name}}}")
            else:
                out.append(part)
        return "/".join(out)

    return VARIABLE.sub(variable, template), names


def _singular(collection: str) -> str:
    return collection[:-1] if collection.endswith("s") else collection


def _query_parameters(route: HttpRoute, schemas: _Schemas) -> list[dict[str, Any]]:
    if route.body == "*":
        return []
    bound = {f.split(".")[0] for f in route.fields.values()} | {route.body}
    out = []
    for field in route.route.request_class.DESCRIPTOR.fields:
        if field.name in bound:
            continue
        schema = schemas.field(field)
        if "$ref" in schema or schema.get("items", {}).get("$ref"):
            continue  # messages in the query: by dotted names, not listed
        out.append({"name": field.json_name, "in": "query", "required": False, "schema": schema})
    return out


def _operation(route: HttpRoute, names: list[str], schemas: _Schemas) -> dict[str, Any]:
    service = route.route.path[1:].split("/")[0]
    parameters: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]
    parameters += _query_parameters(route, schemas)
    operation: dict[str, Any] = {
        "operationId": f"{service.split('.')[-1]}_{route.method}",
        "tags": [service],
        "summary": f"{service}.{route.method} (gRPC {route.route.path})",
        "responses": {
            "200": {
                "description": "OK",
                "content": {
                    "application/json": {"schema": schemas.ref(route.response_class.DESCRIPTOR)}
                },
            },
            "default": {
                "description": "google.rpc.Status with an ErrorInfo detail (docs/errors.md).",
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{STATUS}"}}
                },
            },
        },
    }
    if parameters:
        operation["parameters"] = parameters
    if route.body:
        descriptor: Any = route.route.request_class.DESCRIPTOR
        if route.body != "*":
            descriptor = descriptor.fields_by_name[route.body].message_type
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.ref(descriptor)}},
        }
    option = route.route.option
    if option is not None and option.anonymous:
        operation["security"] = []
    return operation


def _session_paths() -> dict[str, dict[str, Any]]:
    """The browser session routes (gateway.http.session_routes): cookies, never tokens."""
    session = {
        "type": "object",
        "properties": {
            name: {"type": "string"}
            for name in (
                "account",
                "session",
                "ins",
                "dossier",
                "csrfToken",
                "accessTokenExpireTime",
                "refreshTokenExpireTime",
            )
        },
    }
    status = {"$ref": f"#/components/schemas/{STATUS}"}

    def answer(schema: dict[str, Any], summary: str, *, anonymous: bool = False) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "tags": ["session"],
            "summary": summary,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": schema}}},
                "default": {
                    "description": "google.rpc.Status",
                    "content": {"application/json": {"schema": status}},
                },
            },
        }
        if anonymous:
            operation["security"] = []
        return operation

    login = answer(
        session,
        "VerifyOneTimeCode; the tokens become HttpOnly cookies, the CSRF token a readable one.",
        anonymous=True,
    )
    login["operationId"] = "Session_Login"
    login["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/dmp.identity.v1.VerifyOneTimeCodeRequest"}
            }
        },
    }
    whoami = answer(session, "The caller's session (and CSRF token for a cookie session).")
    whoami["operationId"] = "Session_Get"
    refresh = answer(session, f"New cookies from the refresh cookie ({CSRF_HEADER} required).")
    refresh["operationId"] = "Session_Refresh"
    logout = answer(
        {"type": "object", "properties": {"session": {"type": "string"}}},
        f"identity Logout with the session cookie ({CSRF_HEADER} required); cookies cleared.",
    )
    logout["operationId"] = "Session_Logout"
    return {
        "/v1/session": {"post": login, "get": whoami},
        "/v1/session:refresh": {"post": refresh},
        "/v1/session:logout": {"post": logout},
    }


def build_openapi(routes: list[HttpRoute]) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for route in routes:
        path, names = openapi_path(route.template)
        operation = _operation(route, names, schemas)
        while operation["operationId"] in seen:  # an additional binding of the same method
            operation["operationId"] += "_2"
        seen.add(operation["operationId"])
        paths.setdefault(path, {})[route.verb.lower()] = operation
    schemas.ref(status_pb2.Status.DESCRIPTOR)
    paths.update(_session_paths())
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "DMP — HTTP/JSON door",
            "version": "v1",
            "description": (
                "Generated from the protos' google.api.http rules (make gen). proto3 JSON; "
                "errors are google.rpc.Status. Browsers: session cookie `"
                + ACCESS_COOKIE
                + "` set by POST /v1/session, and the header `"
                + CSRF_HEADER
                + "` on every state change; other clients: `Authorization: Bearer`."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "session": {"type": "apiKey", "in": "cookie", "name": ACCESS_COOKIE},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
    }


def openapi_json(routes: list[HttpRoute]) -> bytes:
    return (
        json.dumps(build_openapi(routes), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    ).encode()
