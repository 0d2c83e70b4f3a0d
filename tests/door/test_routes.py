"""The door's routes come from the protos' google.api.http rules: every public unary method
has one, internal ones none, and templates bind the fields AIP-127 says."""

from __future__ import annotations

import pytest

from gateway.http.rules import Router, build_http_routes
from gateway.http.transcode import build_request
from gateway.routing import build_routes
from kit.errors import ServiceError

ROUTES = build_routes()
ROUTER = Router(build_http_routes(ROUTES))


def test_every_public_unary_method_has_a_route_and_no_internal_one_has() -> None:
    routed = {r.route.path for r in ROUTER.routes}
    for path, route in ROUTES.items():
        option = route.option
        public = option is not None and option.action != 0 and not option.internal
        unary = not route.client_streaming and not route.server_streaming
        assert (path in routed) == (public and unary), path


@pytest.mark.parametrize(
    ("verb", "path", "method", "fields"),
    [
        ("GET", "/v1/dossiers/d1", "GetDossier", {"name": "dossiers/d1"}),
        ("GET", "/v1/patients/180057500000101/dossier", "GetDossier", {}),
        ("GET", "/v1/dossiers/d1/documents/x", "GetDocument", {"name": "dossiers/d1/documents/x"}),
        ("GET", "/v1/dossiers/d1/documents", "ListDocuments", {"parent": "dossiers/d1"}),
        ("GET", "/v1/dossiers/d1/documents:search", "SearchDocuments", {}),
        ("POST", "/v1/dossiers/d1/documents/x:updateVisibility", "UpdateDocumentVisibility", {}),
        ("PATCH", "/v1/dossiers/d1/healthProfile", "UpdateHealthProfile", {}),
        ("DELETE", "/v1/dossiers/d1/documents/x", "DeleteDocument", {}),
        ("GET", "/v1/dossiers:countCreations", "CountDossierCreations", {}),
        ("POST", "/v1/challenges/c1:verify", "VerifyOneTimeCode", {"challenge": "challenges/c1"}),
    ],
)
def test_templates_bind_the_path(verb: str, path: str, method: str, fields: dict[str, str]) -> None:
    found = ROUTER.match(verb, path)
    assert found is not None
    route, variables = found
    assert route.method == method
    for key, value in fields.items():
        assert variables[key] == value


def test_internal_methods_have_no_path() -> None:
    assert ROUTER.match("POST", "/v1/dossiers/d1:authorize") is None
    assert not any(r.method == "Authorize" for r in ROUTER.routes)


def test_query_path_and_body_fill_the_request() -> None:
    found = ROUTER.match("PATCH", "/v1/dossiers/d1/healthProfile")
    assert found is not None
    route, variables = found
    request = build_request(
        route,
        variables,
        [
            ("updateMask", "allergies"),
            ("requestId", "r1"),
            ("removeItemIds", "a"),
            ("removeItemIds", "b"),
        ],
        {},
    )
    assert request.health_profile.name == "dossiers/d1/healthProfile"  # type: ignore[attr-defined]
    assert list(request.update_mask.paths) == ["allergies"]  # type: ignore[attr-defined]
    assert list(request.remove_item_ids) == ["a", "b"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ([("nope", "1")], {}),
        ([("healthProfile.name", "x")], {}),
        ([("requestId", "a"), ("requestId", "b")], {}),
    ],
)
def test_unknown_or_misplaced_fields_are_refused(
    query: list[tuple[str, str]], body: dict[str, object]
) -> None:
    found = ROUTER.match("PATCH", "/v1/dossiers/d1/healthProfile")
    assert found is not None
    with pytest.raises(ServiceError) as caught:
        build_request(found[0], found[1], query, body)
    assert caught.value.reason == "INVALID_REQUEST_FIELDS"


def test_unknown_body_field_is_refused() -> None:
    found = ROUTER.match("POST", "/v1/accounts:startLogin")
    assert found is not None
    with pytest.raises(ServiceError) as caught:
        build_request(found[0], found[1], [], {"identifier": "x", "admin": True})
    assert caught.value.reason == "INVALID_REQUEST_FIELDS"
