"""Browser sessions through the JSON door: cookies only, CSRF, logout revokes at the edge."""

from __future__ import annotations

import aiohttp

from dmp_dev.testing.stack import LiveStack
from gateway.http import session as sessions
from tests.door.helpers import (
    cookie,
    cookie_header,
    cookies_of,
    csrf,
    http_client,
    login,
    new_patient,
    send,
)
from tests.e2e.helpers import rid
from tests.waits import until


async def test_cookie_login_reads_the_record_and_logout_revokes(stack: LiveStack) -> None:
    patient = await new_patient(stack)
    async with http_client(stack) as browser:
        opened = await login(stack, browser, patient)
        # No token in the body; tokens only in HttpOnly cookies.
        assert not {"accessToken", "refreshToken", "tokens"} & set(opened.body)
        for name in (sessions.ACCESS_COOKIE, sessions.REFRESH_COOKIE):
            assert cookie(browser, name)
            assert cookie(browser, name) not in str(opened.body)
        assert opened.body["dossier"] == patient.dossier
        set_cookies = opened.headers.getall("Set-Cookie")
        access = next(c for c in set_cookies if c.startswith(sessions.ACCESS_COOKIE))
        for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
            assert attribute in access
        got = await send(browser, "GET", f"/v1/{patient.dossier}")
        assert got.status == 200, got
        assert got.body["patientIns"] == patient.ins
        assert got.headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in got.headers["Content-Security-Policy"]
        old = cookies_of(browser)
        out = await send(
            browser, "POST", "/v1/session:logout", headers={sessions.CSRF_HEADER: csrf(browser)}
        )
        assert out.status == 200, out
    async with http_client(stack, jar=False) as thief:
        again = await send(thief, "GET", f"/v1/{patient.dossier}", headers=cookie_header(old))
        assert again.status == 401, again
        assert again.reason == "SESSION_REVOKED", again


async def _administrative_reads(browser: aiohttp.ClientSession, dossier: str) -> int:
    """How many "read the administrative record" lines the patient's history holds."""
    listed = await send(browser, "GET", f"/v1/{dossier}/accessLog", params={"pageSize": "200"})
    assert listed.status == 200, listed
    entries = listed.body.get("entries", [])
    return sum(1 for e in entries if e.get("action") == "ACTION_READ_ADMINISTRATIVE")


async def test_who_am_i_answers_from_the_session_without_reading_the_record(
    stack: LiveStack,
) -> None:
    """The record name is resolved once at login and kept with the session (signed cookie):
    page loads do not add lines to the patient's own access history; a cookie of another
    value or session is ignored (the door reads the record again rather than trust it)."""
    patient = await new_patient(stack)
    async with http_client(stack) as browser:
        await login(stack, browser, patient)

        async def named() -> bool:
            # Consent may learn of the new record just after the login: the first page
            # load that finds it keeps it.
            who = await send(browser, "GET", "/v1/session")
            return bool(who.body["dossier"]) and bool(cookie(browser, sessions.DOSSIER_COOKIE))

        await until(named, "the session names the record")
        kept = cookie(browser, sessions.DOSSIER_COOKIE)
        assert kept
        assert kept.startswith(patient.dossier.removeprefix("dossiers/") + ".")
        before = await _administrative_reads(browser, patient.dossier)
        assert before >= 1
        for _ in range(3):
            who = await send(browser, "GET", "/v1/session")
            assert who.status == 200, who
            assert who.body["dossier"] == patient.dossier
        assert await _administrative_reads(browser, patient.dossier) == before
        # A forged name is not believed: the door asks records again.
        forged = {**cookies_of(browser), sessions.DOSSIER_COOKIE: f"{'0' * 32}.AAAA"}
    async with http_client(stack, jar=False) as other:
        who = await send(other, "GET", "/v1/session", headers=cookie_header(forged))
        assert who.status == 200, who
        assert who.body["dossier"] == patient.dossier


async def test_a_closed_record_is_named_after_a_new_login_and_reactivates(
    stack: LiveStack,
) -> None:
    patient = await new_patient(stack)
    async with http_client(stack) as browser:
        await login(stack, browser, patient)
        headers = {sessions.CSRF_HEADER: csrf(browser)}

        async def readable() -> bool:  # consent learns of the new record from an event
            return (await send(browser, "GET", f"/v1/{patient.dossier}")).status == 200

        await until(readable, "the patient reads the new record")
        closed = await send(
            browser,
            "POST",
            f"/v1/{patient.dossier}:close",
            json={"reason": "CLOSE_REASON_PATIENT_REQUEST", "requestId": rid()},
            headers=headers,
        )
        assert closed.status == 200, closed

        async def refused_as_closed() -> bool:
            got = await send(browser, "GET", f"/v1/{patient.dossier}")
            return got.status == 400 and got.reason == "DOSSIER_CLOSED"

        await until(refused_as_closed, "the edge refuses the closed record")
        out = await send(browser, "POST", "/v1/session:logout", headers=headers)
        assert out.status == 200, out
    async with http_client(stack) as browser:
        opened = await login(stack, browser, patient)
        assert opened.body["dossier"] == patient.dossier
        assert opened.body["dossierState"] == "DOSSIER_STATE_CLOSED"
        who = await send(browser, "GET", "/v1/session")
        assert who.body["dossier"] == patient.dossier
        reopened = await send(
            browser,
            "POST",
            f"/v1/{patient.dossier}:reactivate",
            json={"requestId": rid()},
            headers={sessions.CSRF_HEADER: csrf(browser)},
        )
        assert reopened.status == 200, reopened
        assert reopened.body["state"] == "DOSSIER_STATE_ACTIVE"
        who = await send(browser, "GET", "/v1/session")
        assert who.body["dossier"] == patient.dossier
