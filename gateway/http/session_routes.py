"""Browser session routes: log in, who am I, refresh, log out (cookies, `gateway.http.session`).

They call identity's own methods through the shared path (`Door.call`):
VerifyOneTimeCode, RefreshToken and Logout, with the same rate limits as a gRPC
client (the per-address bucket for calls without a credential). The tokens
identity returns go into HttpOnly cookies; the JSON answer carries only what
the page needs (account, session, INS, expiry times, the CSRF token).
Logging out calls identity's Logout, so the edge's revocation list refuses the
old access token at once, on both doors.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp

from dmp.identity.v1 import identity_pb2
from dmp.records.v1 import records_pb2
from gateway.authn import Caller
from gateway.http import session as sessions
from gateway.http.door import Door, json_object, json_response, peer_of, session_cookie_required
from gateway.http.transcode import build_request
from gateway.proxy import Inbound
from kit import clock as kit_clock
from kit.errors import ServiceError

ID = identity_pb2
LOGIN = "/v1/session"
REFRESH = "/v1/session:refresh"
LOGOUT = "/v1/session:logout"
_COOKIES = (
    (sessions.ACCESS_COOKIE, True),
    (sessions.REFRESH_COOKIE, True),
    (sessions.CSRF_COOKIE, False),
    (sessions.DOSSIER_COOKIE, True),
)
_PREFIX = "dossiers/"
#: Edge refusals of the patient's own GetDossier that still name the record, and its state.
_REFUSED_STATES = {
    "DOSSIER_CLOSED": "DOSSIER_STATE_CLOSED",
    "TERMS_NOT_ACCEPTED": "DOSSIER_STATE_TERMS_ACCEPTANCE_REQUIRED",
}


def _time(stamp: Timestamp) -> str:
    return stamp.ToJsonString()


def _session_body(caller: Caller, csrf: str | None, dossier: str) -> dict[str, Any]:
    principal = caller.principal
    account = principal.subject
    if not account.startswith("accounts/"):
        account = f"accounts/{account}"
    body: dict[str, Any] = {
        "account": account,
        "session": f"{account}/sessions/{principal.session_id}",
        "ins": principal.patient_ins,
        "dossier": dossier,
    }
    if csrf is not None:
        body["csrfToken"] = csrf
    return body


def _clear(response: web.StreamResponse) -> None:
    for name, http_only in _COOKIES:
        response.headers.add(
            "Set-Cookie", sessions.cookie_header(name, "", expires=None, http_only=http_only)
        )


class SessionRoutes:
    def __init__(self, door: Door) -> None:
        self.door = door
        self.verify = door.route_of("VerifyOneTimeCode")
        self.refresh_route = door.route_of("RefreshToken")
        self.logout_route = door.route_of("Logout")
        self.get_dossier = door.route_of("GetDossier")

    async def _dossier(self, request: web.Request, caller: Caller, token: str) -> tuple[str, str]:
        """The patient's own record name (opaque, never the INS) and state, ("", "") when
        they have none: GetDossier by its INS alias, as the patient, through the shared
        path. A closed record (or one awaiting new terms) refuses that read at the edge;
        the refusal names the record, so the portal can still offer its reactivation."""
        inbound = Inbound((("authorization", f"Bearer {token}"),), peer_of(request))
        name = f"patients/{caller.principal.patient_ins}/dossier"
        try:
            answer = await self.door.call(
                self.get_dossier,
                records_pb2.GetDossierRequest(name=name).SerializeToString(),
                inbound,
            )
        except ServiceError as exc:
            state = _REFUSED_STATES.get(exc.reason)
            named = (exc.metadata or {}).get("dossier", "")
            return (named, state) if state and named else ("", "")
        except grpc.aio.AioRpcError:
            return "", ""
        dossier = records_pb2.Dossier.FromString(answer)
        return dossier.name, records_pb2.DossierState.Name(dossier.state)

    def _remember(
        self,
        response: web.StreamResponse,
        caller: Caller,
        dossier: str,
        expires: datetime | None,
    ) -> None:
        """Keeps the record name with the session (signed, HttpOnly, bound to the session
        id): later `GET /v1/session` answers from it instead of reading the record, which
        would add a line to the patient's own access history at each page load. The name
        never changes (closing or reactivating keeps it); no name is kept while the patient
        has no record, so one created later is found at the next page load."""
        if not dossier:
            return
        # The id alone: `/` is not a cookie-safe character for every client.
        sealed = self.door.csrf.seal(caller.principal.session_id, dossier.removeprefix(_PREFIX))
        response.headers.add(
            "Set-Cookie",
            sessions.cookie_header(
                sessions.DOSSIER_COOKIE,
                sealed,
                expires=expires,
                http_only=True,
                lasting=expires is not None,
            ),
        )

    def _plain(self, request: web.Request) -> Inbound:
        """The call without the session cookie (login and refresh present no access token)."""
        inbound, _ = self.door.inbound(request, use_cookie=False)
        return inbound

    async def _opened(
        self, request: web.Request, tokens: identity_pb2.SessionTokens
    ) -> web.Response:
        """Cookies for `tokens`, and the session's description (no token) as the body."""
        authn = self.door.forwarder.gate.authn
        caller = await authn.authenticate((), [f"Bearer {tokens.access_token}"])
        if caller is None:  # pragma: no cover - a bearer value always yields a caller or raises
            raise session_cookie_required()
        csrf = self.door.csrf.issue(caller.principal.session_id)
        dossier, state = await self._dossier(request, caller, tokens.access_token)
        body = _session_body(caller, csrf, dossier)
        if state:
            body["dossierState"] = state
        body["accessTokenExpireTime"] = _time(tokens.access_token_expire_time)
        body["refreshTokenExpireTime"] = _time(tokens.refresh_token_expire_time)
        response = json_response(_dumps(body))
        until = tokens.refresh_token_expire_time.ToDatetime(tzinfo=UTC)
        self._remember(response, caller, dossier, until)
        values = (
            (sessions.ACCESS_COOKIE, tokens.access_token, tokens.access_token_expire_time, True),
            (sessions.REFRESH_COOKIE, tokens.refresh_token, tokens.refresh_token_expire_time, True),
            (sessions.CSRF_COOKIE, csrf, tokens.refresh_token_expire_time, False),
        )
        for name, value, expires, http_only in values:
            response.headers.add(
                "Set-Cookie",
                sessions.cookie_header(
                    name, value, expires=expires.ToDatetime(tzinfo=UTC), http_only=http_only
                ),
            )
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/session {challenge, code, requestId}: VerifyOneTimeCode, tokens → cookies."""
        try:
            sessions.check_origin(request.headers, _own(request))
            body = json_object(await self.door.body(request))
            message = build_request(self.verify, {}, (), body)
            answer = await self.door.call(
                self.verify, message.SerializeToString(), self._plain(request)
            )
            return await self._opened(
                request, ID.VerifyOneTimeCodeResponse.FromString(answer).tokens
            )
        except Exception as exc:
            return self.door.failure(LOGIN, self.verify.route.path, exc)

    async def whoami(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/session: the caller's session (and its CSRF token for a cookie session)."""
        try:
            inbound, by_cookie = self.door.inbound(request)
            authorizations = [v for k, v in inbound.metadata if k == "authorization"]
            gate = self.door.forwarder.gate
            caller = await gate.authn.authenticate((), [str(v) for v in authorizations])
            if caller is None:
                raise session_cookie_required()
            gate.limiter.take(caller.key)
            csrf = self.door.csrf.issue(caller.principal.session_id) if by_cookie else None
            session_id = caller.principal.session_id
            kept = request.cookies.get(sessions.DOSSIER_COOKIE) if by_cookie else None
            dossier_id = self.door.csrf.unseal(kept, session_id)
            if dossier_id:
                body = _session_body(caller, csrf, f"{_PREFIX}{dossier_id}")
                return json_response(_dumps(body))
            token = str(authorizations[0]).partition(" ")[2].strip()
            dossier, state = await self._dossier(request, caller, token)
            body = _session_body(caller, csrf, dossier)
            if state:
                body["dossierState"] = state
            response = json_response(_dumps(body))
            if by_cookie:
                # Found after login (a record created or projected since): kept from now
                # on, for the browser's session (this answer does not know the tokens' life).
                self._remember(response, caller, dossier, None)
            return response
        except Exception as exc:
            return self.door.failure(LOGIN, "GET /v1/session", exc)

    async def _refresh(self, request: web.Request) -> identity_pb2.SessionTokens:
        session_id = self.door.csrf.session_of(request.headers.get(sessions.CSRF_HEADER))
        refresh = request.cookies.get(sessions.REFRESH_COOKIE)
        if not refresh:
            raise session_cookie_required()
        message = ID.RefreshTokenRequest(refresh_token=refresh, request_id=str(uuid.uuid4()))
        answer = await self.door.call(
            self.refresh_route, message.SerializeToString(), self._plain(request)
        )
        tokens = ID.RefreshTokenResponse.FromString(answer).tokens
        if sessions.session_id_of(tokens.session) != session_id:
            raise sessions.csrf_refused()  # a CSRF token of another session
        return tokens

    async def refresh(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/session:refresh: the refresh cookie for new cookies (X-DMP-CSRF needed)."""
        try:
            sessions.check_origin(request.headers, _own(request))
            return await self._opened(request, await self._refresh(request))
        except Exception as exc:
            return self.door.failure(REFRESH, self.refresh_route.route.path, exc)

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/session:logout: identity Logout with the session cookie, cookies cleared."""
        passed = False
        ended = ""

        def csrf_then_clear(caller: Caller | None) -> None:
            nonlocal passed, ended
            check(caller)
            passed = True
            ended = caller.principal.session_id if caller is not None else ""

        try:
            check = self.door.csrf_check(request)
            access = request.cookies.get(sessions.ACCESS_COOKIE)
            if not access:
                if not request.cookies.get(sessions.REFRESH_COOKIE):
                    raise session_cookie_required()
                access = (await self._refresh(request)).access_token
            inbound, _ = self.door.inbound(request, use_cookie=False)
            inbound = Inbound(
                (*inbound.metadata, ("authorization", f"Bearer {access}")), inbound.peer
            )
            message = ID.LogoutRequest(request_id=str(uuid.uuid4()))
            answer = await self.door.call(
                self.logout_route, message.SerializeToString(), inbound, csrf_then_clear
            )
            response = json_response(
                _dumps({"session": ID.LogoutResponse.FromString(answer).session})
            )
            if ended:
                # This replica refuses the session at once; the others when identity's
                # `session.revoked` event reaches them (milliseconds), as after a gRPC Logout.
                self.door.forwarder.gate.authn.sessions.revoke(ended, kit_clock.timestamp())
            _clear(response)
            return response
        except Exception as exc:
            failed = self.door.failure(LOGOUT, self.logout_route.route.path, exc)
            refused = isinstance(exc, ServiceError) and exc.reason in _CSRF_REASONS
            if passed or not refused:
                _clear(failed)  # a dead or revoked session: the browser forgets it too
            return failed


_CSRF_REASONS = frozenset({"INVALID_CSRF_TOKEN", "ORIGIN_REFUSED"})


def _own(request: web.Request) -> frozenset[str]:
    return frozenset({f"https://{request.host}"})


def _dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def add_session_routes(app: web.Application, door: Door) -> None:
    routes = SessionRoutes(door)
    app.router.add_post(LOGIN, routes.login)
    app.router.add_get(LOGIN, routes.whoami)
    app.router.add_post(REFRESH, routes.refresh)
    app.router.add_post(LOGOUT, routes.logout)
