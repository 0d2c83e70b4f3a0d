"""Browser sessions through the JSON door: cookies only, CSRF, logout revokes at the edge."""

from __future__ import annotations

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
