"""The gRPC edge's attack list, through the JSON door, over real HTTPS with real logins.

Another patient's record, forged headers (a signed principal, x-forwarded-*), a bearer
token next to the session cookie, an expired or revoked session, CSRF without token or
with a wrong one or another session's, a cross-site Origin, an oversized body, malformed
JSON, an unknown field, an internal method's path: each refused with the precise status
and reason, and nothing written.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from dmp.authz.v1 import principal_pb2
from dmp.consent.v1 import consent_pb2, consent_pb2_grpc
from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_dev.testing.stack import LiveStack
from gateway.http import session as sessions
from kit.tokens import AccessTokenIssuer, load_private_key
from tests.door.helpers import (
    Answer,
    Patient,
    cookie,
    cookie_header,
    cookies_of,
    csrf,
    http_client,
    login,
    new_patient,
    send,
)
from tests.e2e.helpers import bearer, rid, rpps
from tests.fixtures.stack import HTTP_MAX_BODY_BYTES
from tests.gateway.replica import replica

HTTP = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


@pytest.fixture(scope="module")
def pair() -> dict[str, object]:
    return {}


async def two(stack: LiveStack, pair: dict[str, object]) -> tuple[Patient, Patient]:
    if not pair:
        pair["a"], pair["b"] = await new_patient(stack), await new_patient(stack)
    return pair["a"], pair["b"]  # type: ignore[return-value]


async def rules_of(stack: LiveStack, patient: Patient) -> int:
    """How many access rules the patient's record holds (gRPC, the patient's own token)."""
    stub = consent_pb2_grpc.ConsentServiceStub(stack.patient_channel())
    listed = await stub.ListAccessRules(
        consent_pb2.ListAccessRulesRequest(parent=patient.dossier, show_inactive=True),
        metadata=bearer(stack.token(patient.ins)),
        timeout=10,
    )
    return len(listed.access_rules)


def block(patient: Patient) -> tuple[str, dict[str, object]]:
    return (
        f"/v1/{patient.dossier}/accessRules:block",
        {"professionalRpps": rpps("doctor2"), "requestId": rid()},
    )


async def test_another_patients_record_is_refused_as_over_grpc(
    stack: LiveStack, pair: dict[str, object]
) -> None:
    a, b = await two(stack, pair)
    stub = records_pb2_grpc.RecordsServiceStub(stack.patient_channel())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetDossier(
            records_pb2.GetDossierRequest(name=b.dossier),
            metadata=bearer(stack.token(a.ins)),
            timeout=10,
        )
    async with http_client(stack) as browser:
        await login(stack, browser, a)
        answer = await send(browser, "GET", f"/v1/{b.dossier}")
        assert answer.status == HTTP[caught.value.code()], answer
        assert "patientIns" not in str(answer.body)
        # Forged headers change nothing: a signed principal naming B, proxies' headers.
        principal = principal_pb2.Principal(
            kind=principal_pb2.PRINCIPAL_KIND_PATIENT, subject="x", patient_ins=b.ins
        )
        signed = dict(stack.signed(principal, "/dmp.records.v1.RecordsService/GetDossier"))
        forged = {
            "dmp-principal-bin": base64.b64encode(signed["dmp-principal-bin"]).decode(),
            "X-Forwarded-For": "10.0.0.1",
            "X-Forwarded-Host": "internal",
            "X-Real-IP": "10.0.0.1",
        }
        again = await send(browser, "GET", f"/v1/{b.dossier}", headers=forged)
        assert (again.status, again.reason) == (answer.status, answer.reason)
    async with http_client(stack) as anonymous:
        alone = await send(anonymous, "GET", f"/v1/{b.dossier}", headers=forged)
        assert alone.status == 401, alone
        assert alone.reason == "UNAUTHENTICATED"


async def test_bearer_and_cookie_together_are_ambiguous(
    stack: LiveStack, pair: dict[str, object]
) -> None:
    a, _ = await two(stack, pair)
    async with http_client(stack) as browser:
        await login(stack, browser, a)
        both = await send(
            browser,
            "GET",
            f"/v1/{a.dossier}",
            headers={"Authorization": f"Bearer {stack.token(a.ins)}"},
        )
        assert both.status == 401, both
        assert both.reason == "CREDENTIALS_AMBIGUOUS"
    async with http_client(stack) as app:
        twice = await send(
            app,
            "GET",
            f"/v1/{a.dossier}",
            headers=[
                ("Authorization", f"Bearer {stack.token(a.ins)}"),
                ("Authorization", f"Bearer {stack.token(a.ins)}"),
            ],
        )
        assert twice.reason == "CREDENTIALS_AMBIGUOUS", twice


async def test_expired_access_cookie_is_refused(stack: LiveStack, pair: dict[str, object]) -> None:
    a, _ = await two(stack, pair)
    issuer = AccessTokenIssuer(load_private_key(stack.token_signing_key_file))
    old = issuer.issue(
        account="acct", ins=a.ins, session_id="s-old", now=stack.clock.now() - timedelta(hours=1)
    )
    async with http_client(stack, jar=False) as browser:
        answer = await send(
            browser,
            "GET",
            f"/v1/{a.dossier}",
            headers=cookie_header({sessions.ACCESS_COOKIE: old.token}),
        )
        assert answer.status == 401, answer
        assert answer.reason == "TOKEN_EXPIRED"
        who = await send(
            browser,
            "GET",
            "/v1/session",
            headers=cookie_header({sessions.ACCESS_COOKIE: old.token}),
        )
        assert who.reason == "TOKEN_EXPIRED", who


async def test_revoked_session_refresh_cookie_is_refused_too(
    stack: LiveStack, pair: dict[str, object]
) -> None:
    a, _ = await two(stack, pair)
    async with http_client(stack) as browser:
        await login(stack, browser, a)
        refreshed = await send(
            browser, "POST", "/v1/session:refresh", headers={sessions.CSRF_HEADER: csrf(browser)}
        )
        assert refreshed.status == 200, refreshed
        old = cookies_of(browser)
        out = await send(
            browser, "POST", "/v1/session:logout", headers={sessions.CSRF_HEADER: csrf(browser)}
        )
        assert out.status == 200, out
        cleared = out.headers.getall("Set-Cookie")
        assert all("Max-Age=0" in c for c in cleared)
        # The tokens, the CSRF token and the kept record name.
        assert len(cleared) == 4
        assert any(c.startswith(f"{sessions.DOSSIER_COOKIE}=;") for c in cleared)
    async with http_client(stack, jar=False) as thief:
        again = await send(
            thief,
            "POST",
            "/v1/session:refresh",
            headers={**cookie_header(old), sessions.CSRF_HEADER: old[sessions.CSRF_COOKIE]},
        )
        assert again.status == 401, again
        assert again.reason in ("SESSION_REVOKED", "TOKEN_INVALID"), again


async def test_csrf_is_required_bound_to_the_session_and_same_site(
    stack: LiveStack, pair: dict[str, object]
) -> None:
    a, b = await two(stack, pair)
    before = await rules_of(stack, a)
    async with http_client(stack) as other:
        await login(stack, other, b)
        foreign = csrf(other)
    async with http_client(stack) as browser:
        await login(stack, browser, a)
        path, body = block(a)
        attempts: list[tuple[dict[str, str], str]] = [
            ({}, "INVALID_CSRF_TOKEN"),
            ({sessions.CSRF_HEADER: "nope"}, "INVALID_CSRF_TOKEN"),
            ({sessions.CSRF_HEADER: csrf(browser) + "x"}, "INVALID_CSRF_TOKEN"),
            ({sessions.CSRF_HEADER: foreign}, "INVALID_CSRF_TOKEN"),
            (
                {sessions.CSRF_HEADER: csrf(browser), "Origin": "https://evil.example"},
                "ORIGIN_REFUSED",
            ),
            (
                {sessions.CSRF_HEADER: csrf(browser), "Sec-Fetch-Site": "cross-site"},
                "ORIGIN_REFUSED",
            ),
        ]
        for headers, reason in attempts:
            answer = await send(browser, "POST", path, json=body, headers=headers)
            assert (answer.status, answer.reason) == (403, reason), (headers, answer)
        logout = await send(browser, "POST", "/v1/session:logout")
        assert logout.reason == "INVALID_CSRF_TOKEN", logout
        assert not logout.headers.getall("Set-Cookie", [])  # no forced logout either
        assert await rules_of(stack, a) == before  # nothing was written
        # The page's own request goes through.
        own = await send(
            browser,
            "POST",
            path,
            json=body,
            headers={sessions.CSRF_HEADER: csrf(browser), "Origin": stack.http_url},
        )
        assert own.status == 200, own
        assert await rules_of(stack, a) == before + 1


async def test_bearer_clients_need_no_csrf(stack: LiveStack, pair: dict[str, object]) -> None:
    _, b = await two(stack, pair)
    async with http_client(stack) as app:
        path, body = block(b)
        answer = await send(
            app, "POST", path, json=body, headers={"Authorization": f"Bearer {stack.token(b.ins)}"}
        )
        assert answer.status == 200, answer
        assert answer.body["name"].startswith(b.dossier + "/accessRules/")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "JSON_MALFORMED"),
        (
            b'{"professionalRpps": "10000000116", "requestId": "x", "isAdmin": true}',
            "INVALID_REQUEST_FIELDS",
        ),
        (b'{"professionalRpps": 12}', "INVALID_REQUEST_FIELDS"),
        (b"[1, 2]", "INVALID_REQUEST_FIELDS"),
    ],
)
async def test_bad_json_is_400_with_its_reason(
    stack: LiveStack, pair: dict[str, object], raw: bytes, reason: str
) -> None:
    _, b = await two(stack, pair)
    before = await rules_of(stack, b)
    async with http_client(stack) as app:
        path, _ = block(b)
        answer = await send(
            app,
            "POST",
            path,
            data=raw,
            headers={
                "Authorization": f"Bearer {stack.token(b.ins)}",
                "Content-Type": "application/json",
            },
        )
        assert answer.status == 400, answer
        assert answer.reason == reason
        assert answer.body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert answer.headers["Cache-Control"] == "no-store"
    assert await rules_of(stack, b) == before


async def test_oversized_body_is_413(stack: LiveStack, pair: dict[str, object]) -> None:
    _, b = await two(stack, pair)
    async with http_client(stack) as app:
        answer = await send(
            app,
            "POST",
            f"/v1/{b.dossier}/documents",
            data=b"{" + b" " * HTTP_MAX_BODY_BYTES + b"}",
            headers={
                "Authorization": f"Bearer {stack.token(b.ins)}",
                "Content-Type": "application/json",
            },
        )
        assert answer.status == 413, answer
        assert answer.reason == "BODY_TOO_LARGE"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/dossiers/x:authorize"),
        ("POST", "/dmp.consent.v1.ConsentService/Authorize"),
        ("POST", "/v1/dmp.consent.v1.ConsentService/Authorize"),
        ("POST", "/v1/professionals"),  # CreateProfessional is internal
        ("GET", "/v1/certificates/abc"),
    ],
)
async def test_internal_methods_have_no_route(stack: LiveStack, method: str, path: str) -> None:
    async with http_client(stack) as app:
        answer = await send(
            app, method, path, json={}, headers={"Authorization": f"Bearer {stack.token('x')}"}
        )
        assert answer.status in (404, 405), answer
        if path.startswith("/v1/"):
            assert answer.reason in ("ROUTE_NOT_FOUND", "HTTP_METHOD_NOT_ALLOWED"), answer
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


async def test_portal_files_without_listing_or_escape(stack: LiveStack, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "js").mkdir(parents=True)
    (site / "index.html").write_text("<!doctype html><title>DMP</title>")
    (site / "js" / "app.js").write_text("export {};")
    (site / ".secret").write_text("no")
    (tmp_path / "outside.txt").write_text("no")
    async with replica(stack, portal_dir=str(site), gateway_http_port=0) as gateway:
        base = f"https://localhost:{gateway.http_port}"
        async with http_client(stack) as browser:

            async def get(path: str) -> Answer:
                return await send(browser, "GET", base + path, allow_redirects=False)

            home = await get("/")
            assert home.status == 302
            assert home.headers["Location"] == "/portail/"
            index = await get("/portail/")
            assert index.status == 200
            assert index.headers["Content-Type"].startswith("text/html")
            script = await get("/portail/js/app.js")
            assert script.headers["Content-Type"].startswith("text/javascript")
            assert "script-src 'self'" in script.headers["Content-Security-Policy"]
            assert script.headers["X-Content-Type-Options"] == "nosniff"
            for refused in (
                "/portail/js/",
                "/portail/.secret",
                "/portail/../outside.txt",
                "/portail/%2e%2e/outside.txt",
                "/portail/js/../../outside.txt",
            ):
                answer = await get(refused)
                assert answer.status == 404, refused
        assert cookie(browser, sessions.ACCESS_COOKIE) == ""
