"""HTTP routes built at start from the `google.api.http` rules of the routed methods.

A rule's path template (`/v1/{name=dossiers/*/documents/*}:verb`) becomes a
regular expression whose groups are the request fields the path sets; `*`
matches one segment (no `/`, no `:`), `**` any number. Internal methods, methods
without an authz option and streaming methods get no route: the door never
offers what the gRPC edge refuses to everybody.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from gateway.routing import SERVICES, Route

VARIABLE = re.compile(r"\{([a-z_][a-z0-9_.]*)(?:=([^}]*))?\}")
_SEGMENT = "[^/:]+"


@dataclass(frozen=True)
class HttpRoute:
    """One REST route: HTTP method, compiled template, where the body goes, the gRPC route."""

    verb: str
    template: str
    pattern: re.Pattern[str]
    #: Regex group name → dotted request field it sets.
    fields: dict[str, str]
    #: "" (no body), "*" (the whole request) or a top-level field name.
    body: str
    route: Route
    response_class: type[Message]

    @property
    def method(self) -> str:
        """The gRPC method name (OpenAPI operation id, metrics label)."""
        return self.route.path.rsplit("/", 1)[1]


def _compile(template: str) -> tuple[re.Pattern[str], dict[str, str]]:
    """The regex of a path template and its group → field map."""
    fields: dict[str, str] = {}
    out: list[str] = []
    position = 0
    for match in VARIABLE.finditer(template):
        out.append(re.escape(template[position : match.start()]))
        field, inner = match.group(1), match.group(2) or "*"
        group = f"f{len(fields)}"
        fields[group] = field
        parts = [
            "[^:]+" if part == "**" else _SEGMENT if part == "*" else re.escape(part)
            for part in inner.split("/")
        ]
        out.append(f"(?P<{group}>{'/'.join(parts)})")
        position = match.end()
    out.append(re.escape(template[position:]))
    return re.compile("".join(out)), fields


def _rule(method: MethodDescriptor) -> http_pb2.HttpRule | None:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return None
    rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
    return rule


def build_http_routes(routes: dict[str, Route]) -> list[HttpRoute]:
    """Every public unary method with an http rule, in descriptor order."""
    pool = descriptor_pool.Default()
    found: list[HttpRoute] = []
    for service_name in SERVICES:
        for method in pool.FindServiceByName(service_name).methods:
            route = routes.get(f"/{service_name}/{method.name}")
            rule = _rule(method)
            if route is None or rule is None or route.option is None:
                continue
            if route.option.internal or route.option.action == 0:
                continue
            if route.client_streaming or route.server_streaming:
                continue
            response = message_factory.GetMessageClass(method.output_type)
            for binding in (rule, *rule.additional_bindings):
                verb = binding.WhichOneof("pattern")
                if verb is None or verb == "custom":
                    continue
                template = getattr(binding, verb)
                pattern, fields = _compile(template)
                found.append(
                    HttpRoute(
                        verb=verb.upper(),
                        template=template,
                        pattern=pattern,
                        fields=fields,
                        body=binding.body,
                        route=route,
                        response_class=response,
                    )
                )
    return found


class Router:
    """Finds the route of (HTTP method, raw path); a linear scan of a few dozen regexes."""

    def __init__(self, routes: list[HttpRoute]) -> None:
        self.routes = routes
        self._by_verb: dict[str, list[HttpRoute]] = {}
        for route in routes:
            self._by_verb.setdefault(route.verb, []).append(route)

    def match(self, verb: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        for route in self._by_verb.get(verb, ()):
            found = route.pattern.fullmatch(path)
            if found is not None:
                return route, {route.fields[g]: v for g, v in found.groupdict().items()}
        return None

    def allows(self, path: str) -> bool:
        """Whether some other HTTP method has a route for `path` (405 rather than 404)."""
        return any(r.pattern.fullmatch(path) for r in self.routes)
