"""Refresh-token rotation, theft detection, logout and revocation events."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from nats.aio.client import Client

from dmp.identity.v1 import events_pb2, identity_pb2
from dmp_dev.testing import principals
from kit.clock import ManualClock
from kit.errors import ServiceError, error_info
from kit.tokens import AccessTokenVerifier, load_public_key, public_key_path
from tests.fixtures.notify import NotifySinks
from tests.identity.helpers import login, md, patient_principal, register_patient, rid
from tests.waits import until


def failure(exc: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> tuple[grpc.StatusCode, str]:
    info = error_info(exc.value)
    assert info is not None
    return exc.value.code(), info.reason


async def refresh(stub, token: str) -> identity_pb2.SessionTokens:
    response = await stub.RefreshToken(
        identity_pb2.RefreshTokenRequest(request_id=rid(), refresh_token=token)
    )
    return response.tokens


async def refresh_fails(stub, token: str) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await refresh(stub, token)
    return failure(exc)


async def test_refresh_rotates(
    stub, notify_sinks: NotifySinks, identity_server, clock: ManualClock
) -> None:
    patient = await register_patient(stub)
    first = await login(stub, notify_sinks, patient)
    second = await refresh(stub, first.refresh_token)
    third = await refresh(stub, second.refresh_token)
    assert len({first.refresh_token, second.refresh_token, third.refresh_token}) == 3
    assert first.session == second.session == third.session
    public = load_public_key(public_key_path(identity_server.app.settings.token_signing_key_file))
    claims = AccessTokenVerifier([public]).verify(third.access_token, now=clock.now())
    assert third.session.endswith(claims.session_id)


async def test_reused_refresh_token_revokes_the_session(
    stub, notify_sinks: NotifySinks, nats_url: str
) -> None:
    nc = Client()
    await nc.connect(nats_url)
    revoked: list[events_pb2.SessionRevoked] = []

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        revoked.append(events_pb2.SessionRevoked.FromString(msg.data))

    await nc.subscribe("dmp.identity.session.revoked", cb=on_event)
    try:
        patient = await register_patient(stub)
        first = await login(stub, notify_sinks, patient)
        second = await refresh(stub, first.refresh_token)
        # The thief (or the victim) replays the first token: the whole family dies.
        assert await refresh_fails(stub, first.refresh_token) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "REFRESH_TOKEN_REUSED",
        )
        assert await refresh_fails(stub, second.refresh_token) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "SESSION_REVOKED",
        )
        session_id = second.session.rsplit("/", 1)[1]
        await until(lambda: any(e.session_id == session_id for e in revoked), "the revocation")
        event = next(e for e in revoked if e.session_id == session_id)
        assert event.account == patient.account
        assert event.reason == events_pb2.REVOKE_REASON_REFRESH_TOKEN_REUSED
    finally:
        await nc.close()


async def test_refresh_token_expires(stub, notify_sinks: NotifySinks, clock: ManualClock) -> None:
    patient = await register_patient(stub)
    tokens = await login(stub, notify_sinks, patient)
    clock.advance(timedelta(hours=12, seconds=1))
    assert await refresh_fails(stub, tokens.refresh_token) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_EXPIRED",
    )


async def test_access_token_expires_after_ten_minutes(
    stub, notify_sinks: NotifySinks, identity_server, clock: ManualClock
) -> None:
    patient = await register_patient(stub)
    tokens = await login(stub, notify_sinks, patient)
    public = load_public_key(public_key_path(identity_server.app.settings.token_signing_key_file))
    verifier = AccessTokenVerifier([public])
    verifier.verify(tokens.access_token, now=clock.now() + timedelta(minutes=9))
    with pytest.raises(ServiceError) as exc:
        verifier.verify(tokens.access_token, now=clock.now() + timedelta(minutes=10, seconds=6))
    assert exc.value.reason == "TOKEN_EXPIRED"


@pytest.mark.parametrize("token", ["dmprt_" + "A" * 43, "not-a-token", "dmprt_short"])
async def test_unknown_refresh_token(stub, token: str) -> None:
    assert await refresh_fails(stub, token) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


async def test_logout_revokes_the_session(stub, notify_sinks: NotifySinks, nats_url: str) -> None:
    nc = Client()
    await nc.connect(nats_url)
    seen: list[events_pb2.SessionRevoked] = []

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        seen.append(events_pb2.SessionRevoked.FromString(msg.data))

    await nc.subscribe("dmp.identity.session.revoked", cb=on_event)
    try:
        patient = await register_patient(stub)
        tokens = await login(stub, notify_sinks, patient)
        other = await login(stub, notify_sinks, patient)
        principal = patient_principal(patient, tokens)
        response = await stub.Logout(
            identity_pb2.LogoutRequest(request_id=rid()), metadata=md(principal, "Logout")
        )
        assert response.session == tokens.session
        assert await refresh_fails(stub, tokens.refresh_token) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "SESSION_REVOKED",
        )
        # Other sessions of the account are untouched.
        await refresh(stub, other.refresh_token)
        # Logging out again is a success (idempotent), even with a new request id.
        await stub.Logout(
            identity_pb2.LogoutRequest(request_id=rid()), metadata=md(principal, "Logout")
        )
        session_id = tokens.session.rsplit("/", 1)[1]
        # A later revocation as a marker: identity's outbox publishes in order, so once the
        # other session's event is in, any event of the second Logout would be too.
        await stub.Logout(
            identity_pb2.LogoutRequest(request_id=rid()),
            metadata=md(patient_principal(patient, other), "Logout"),
        )
        marker = other.session.rsplit("/", 1)[1]
        await until(lambda: any(e.session_id == marker for e in seen), "the marker's event")
        matching = [e for e in seen if e.session_id == session_id]
        assert len(matching) == 1
        assert matching[0].reason == events_pb2.REVOKE_REASON_LOGOUT
    finally:
        await nc.close()


async def test_logout_needs_a_patient_session(stub, notify_sinks: NotifySinks) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Logout(identity_pb2.LogoutRequest(request_id=rid()))
    assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    patient = await register_patient(stub)
    stranger = principals.patient(patient.ins, session_id="f" * 32)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Logout(
            identity_pb2.LogoutRequest(request_id=rid()), metadata=md(stranger, "Logout")
        )
    assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_REVOKED")
    # A session of another patient cannot be logged out with this patient's INS.
    tokens = await login(stub, notify_sinks, patient)
    other = await register_patient(stub)
    forged = principals.patient(other.ins, session_id=tokens.session.rsplit("/", 1)[1])
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Logout(
            identity_pb2.LogoutRequest(request_id=rid()), metadata=md(forged, "Logout")
        )
    assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_REVOKED")
    professional = principals.professional("10000000009")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Logout(
            identity_pb2.LogoutRequest(request_id=rid()), metadata=md(professional, "Logout")
        )
    assert failure(exc) == (grpc.StatusCode.PERMISSION_DENIED, "PRINCIPAL_KIND_NOT_ALLOWED")
