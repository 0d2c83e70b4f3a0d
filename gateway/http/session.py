"""Browser sessions: tokens in HttpOnly cookies, a CSRF token bound to the session.

After the one-time code (`POST /v1/session`) the door keeps identity's tokens
out of the JSON the page reads and sets them as cookies the page's scripts can
never read (`HttpOnly; Secure; SameSite=Strict; Path=/`, `__Host-` names: no
Domain, so no sibling host can set or shadow them). The access cookie lives as
long as the access token, the refresh cookie as long as the refresh token.

CSRF: a state-changing request authenticated by the cookie must carry the
session's CSRF token in `X-DMP-CSRF`. The token is `<session id>.<mac>`, mac =
HMAC-SHA256 under a gateway secret of the session id; the page reads it from
the `__Host-dmp_csrf` cookie (not HttpOnly) or from `GET /v1/session`. It is
checked against the session of the *verified* access token (so another
session's token is refused), and with the refresh cookie against the session
identity returns on refresh. The browser's `Origin` (or `Sec-Fetch-Site`) must
also be this site's. A request with a bearer `Authorization` header carries no
ambient credential and needs neither.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping
from datetime import datetime

from kit import clock
from kit.errors import ServiceError, permission_denied

ACCESS_COOKIE = "__Host-dmp_access"
REFRESH_COOKIE = "__Host-dmp_refresh"
CSRF_COOKIE = "__Host-dmp_csrf"
DOSSIER_COOKIE = "__Host-dmp_dossier"
CSRF_HEADER = "X-DMP-CSRF"
_SAFE_SITES = frozenset({"same-origin", "none"})


def csrf_refused() -> ServiceError:
    return permission_denied(
        "INVALID_CSRF_TOKEN",
        f"A state change with the session cookie needs the session's {CSRF_HEADER} header.",
    )


class CsrfTokens:
    """Issues and checks `<session id>.<HMAC(secret, session id)>` tokens."""

    def __init__(self, secret: bytes | None = None) -> None:
        # Without a configured secret, one per process: tokens then only live as long as it
        # (a restart or another replica asks the page to log in again), never weaker.
        self._secret = secret or os.urandom(32)

    def issue(self, session_id: str) -> str:
        mac = hmac.new(self._secret, b"dmp-csrf\x00" + session_id.encode(), hashlib.sha256)
        return f"{session_id}.{base64.urlsafe_b64encode(mac.digest()).decode().rstrip('=')}"

    def check(self, presented: str | None, session_id: str) -> None:
        """PERMISSION_DENIED INVALID_CSRF_TOKEN unless `presented` is `session_id`'s token."""
        if not presented or not session_id:
            raise csrf_refused()
        if not hmac.compare_digest(presented.encode(), self.issue(session_id).encode()):
            raise csrf_refused()

    def _seal_mac(self, session_id: str, value: str) -> str:
        message = b"dmp-dossier\x00" + session_id.encode() + b"\x00" + value.encode()
        mac = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def seal(self, session_id: str, value: str) -> str:
        """`<value>.<HMAC>` bound to `session_id`: the record name kept in the session's
        HttpOnly cookie, so `GET /v1/session` need not ask records (and log a read) again."""
        return f"{value}.{self._seal_mac(session_id, value)}"

    def unseal(self, presented: str | None, session_id: str) -> str | None:
        """The value `seal` bound to this session, None if absent, forged or another session's."""
        if not presented or "." not in presented or not session_id:
            return None
        value, _, mac = presented.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._seal_mac(session_id, value).encode()):
            return None
        return value

    def session_of(self, presented: str | None) -> str:
        """The session id a well-formed, genuine token names (before identity confirms it)."""
        if not presented or "." not in presented:
            raise csrf_refused()
        session_id = presented.rpartition(".")[0]
        self.check(presented, session_id)
        return session_id


def check_origin(headers: Mapping[str, str], own_origins: frozenset[str]) -> None:
    """PERMISSION_DENIED ORIGIN_REFUSED for a request another site made the browser send."""
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site not in _SAFE_SITES:
        raise permission_denied("ORIGIN_REFUSED", "Cross-site requests are refused.")
    origin = headers.get("Origin")
    if origin is not None and origin not in own_origins:
        raise permission_denied("ORIGIN_REFUSED", "Cross-site requests are refused.")


def cookie_header(
    name: str, value: str, *, expires: datetime | None, http_only: bool, lasting: bool = True
) -> str:
    """A `Set-Cookie` value; `expires` None deletes the cookie, unless `lasting` is False:
    then a cookie without Max-Age (the browser forgets it when it closes)."""
    max_age = 0 if expires is None else max(int((expires - clock.now()).total_seconds()), 0)
    parts = [f"{name}={value}", "Path=/", "Secure", "SameSite=Strict"]
    if lasting:
        parts.append(f"Max-Age={max_age}")
    if http_only:
        parts.append("HttpOnly")
    return "; ".join(parts)


def session_id_of(session_name: str) -> str:
    """`accounts/{account}/sessions/{session}` → `{session}` (the tokens' `sid`)."""
    return session_name.rpartition("/")[2]
