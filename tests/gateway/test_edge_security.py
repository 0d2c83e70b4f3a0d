"""The edge's authentication through the launcher-started gateway, with real logins and cards.

- Session revocation: a patient's access token stops working at the gateway
  once identity revokes its session (refresh-token reuse, credential recovery,
  logout, password change), also on a gateway started after the revocation
  and when the revocation was made while NATS was down.
- Undecodable requests are INVALID_ARGUMENT REQUEST_MALFORMED for every
  method (anonymous or not, unary or client stream, at the gateway and at a
  service); an upstream UNKNOWN / INTERNAL reaches the client as a generic
  INTERNAL with the trace id.
- Every card must be registered: staff and service certificates the
  directory does not list are refused CERTIFICATE_UNKNOWN.
- The CRL is reloaded while the gateway runs; an invalid new CRL is ignored.
- Two credentials on one call are refused (CREDENTIALS_AMBIGUOUS).
- identity.ResolveCertificate joins the trace of the call it authenticates.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import grpc
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dmp.history.v1 import history_pb2
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.records.v1 import records_pb2
from dmp_dev import pki
from dmp_dev.cli.pki import revoke as pki_revoke
from dmp_dev.launcher.cards import registration_request
from dmp_dev.launcher.nats_server import free_port, wait_for_port
from dmp_dev.testing.stack import LiveStack
from gateway.app import start_gateway
from gateway.revocations import RevokedSessions
from kit import principal as principals
from kit.errors import ServiceError, error_info
from tests.e2e.helpers import (
    bearer,
    eventually,
    expect,
    records,
    rid,
    until_refused,
)
from tests.fixtures.records import make_ins
from tests.gateway.replica import second_gateway

ID = identity_pb2
R = records_pb2
S = grpc.StatusCode
PASSWORD = "Correct-Horse-42-battery"
NEW_PASSWORD = "Battery-Staple-73-horse"
# The design bound is about a second after identity's relay publishes (a lingering pull);
# the waits below are deadlines for a loaded two-core CI machine, not timings.
REVOKED_WITHIN_S = 15.0
# DMP_CRL_RELOAD_INTERVAL_S (0.5 s on the test stack, 5 s by default) plus the load, with
# the same slack.
CRL_RELOADED_WITHIN_S = 20.0
BAD_BYTES = b"\xff\xff\xff"
IDENTITY = "/dmp.identity.v1.IdentityService/"
_CODE = re.compile(r"\b(\d{6})\b")


@dataclass
class Patient:
    ins: str
    email: str
    password: str = PASSWORD


def identity(channel: grpc.aio.Channel) -> identity_pb2_grpc.IdentityServiceStub:
    return identity_pb2_grpc.IdentityServiceStub(channel)


async def sign_up(stack: LiveStack) -> Patient:
    """A creation code from a CPAM desk card, then the patient's own account (as in test_login)."""
    patient = Patient(make_ins(), f"patient.{uuid.uuid4().hex[:10]}@exemple.fr")
    issued = await identity(stack.card_channel("desk")).IssueCreationCode(
        ID.IssueCreationCodeRequest(request_id=rid(), ins=patient.ins), timeout=10
    )
    await identity(stack.patient_channel()).RegisterPatientAccount(
        ID.RegisterPatientAccountRequest(
            request_id=rid(),
            ins=patient.ins,
            creation_code=issued.creation_code,
            password=patient.password,
            email=patient.email,
        ),
        timeout=15,
    )
    return patient


def mails(stack: LiveStack) -> set[str]:
    return {p.name for p in stack.mail_dir.glob("*.eml")}


async def code_sent(stack: LiveStack, address: str, before: set[str]) -> str:
    """The one-time code of the e-mail to `address` that arrived after the `before` snapshot
    (file names are only second-precise, so order by name is not arrival order)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while loop.time() < deadline:
        for path in sorted(stack.mail_dir.glob("*.eml")):
            if path.name in before:
                continue
            message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
            if address in str(message.get("To", "")) and isinstance(message, EmailMessage):
                body = message.get_body(preferencelist=("plain", "html"))
                found = _CODE.search(str(body.get_content()) if body is not None else "")
                if found:
                    return found.group(1)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no new one-time code for {address}")


async def log_in(stack: LiveStack, patient: Patient) -> ID.SessionTokens:
    """Password, then the one-time code read from the dev mail sink: a new session."""
    anonymous = identity(stack.patient_channel())
    before = mails(stack)
    started = await anonymous.StartLogin(
        ID.StartLoginRequest(request_id=rid(), identifier=patient.ins, password=patient.password),
        timeout=15,
    )
    code = await code_sent(stack, patient.email, before)
    verified = await anonymous.VerifyOneTimeCode(
        ID.VerifyOneTimeCodeRequest(request_id=rid(), challenge=started.challenge, code=code),
        timeout=10,
    )
    return verified.tokens


def probe(stack: LiveStack, token: str) -> Callable[[], Awaitable[Any]]:
    """A patient call through the gateway that needs the token (a directory read)."""
    stub = identity(stack.patient_channel())
    return lambda: stub.ListProfessionals(
        ID.ListProfessionalsRequest(page_size=1), metadata=bearer(token), timeout=10
    )


async def refused_revoked(call: Callable[[], Awaitable[Any]], within_s: float) -> None:
    err = await until_refused(call, S.UNAUTHENTICATED, within_s=within_s)
    info = error_info(err)
    assert info is not None
    assert info.reason == "SESSION_REVOKED", info


async def reuse_refresh_token(stub: identity_pb2_grpc.IdentityServiceStub, refresh: str) -> None:
    """Use a refresh token twice: identity revokes the session (theft detection)."""
    await stub.RefreshToken(ID.RefreshTokenRequest(request_id=rid(), refresh_token=refresh))
    await expect(
        stub.RefreshToken(ID.RefreshTokenRequest(request_id=rid(), refresh_token=refresh)),
        S.UNAUTHENTICATED,
        "REFRESH_TOKEN_REUSED",
    )


# -- session revocation ---------------------------------------------------------------


async def test_refresh_token_reuse_revokes_the_access_token_at_the_edge(stack: LiveStack) -> None:
    patient = await sign_up(stack)
    tokens = await log_in(stack, patient)
    check = probe(stack, tokens.access_token)
    await check()
    await check()  # the allowed decision is cached now: the revocation must still win
    await reuse_refresh_token(identity(stack.patient_channel()), tokens.refresh_token)
    await refused_revoked(check, REVOKED_WITHIN_S)


async def test_recovered_credentials_revoke_every_session_at_the_edge(stack: LiveStack) -> None:
    patient = await sign_up(stack)
    first = await log_in(stack, patient)
    second = await log_in(stack, patient)
    for tokens in (first, second):
        await probe(stack, tokens.access_token)()
    anonymous = identity(stack.patient_channel())
    before = mails(stack)
    started = await anonymous.RecoverCredentials(
        ID.RecoverCredentialsRequest(
            request_id=rid(), start=ID.StartRecovery(identifier=patient.ins)
        ),
        timeout=15,
    )
    code = await code_sent(stack, patient.email, before)
    await anonymous.RecoverCredentials(
        ID.RecoverCredentialsRequest(
            request_id=rid(),
            complete=ID.CompleteRecovery(
                challenge=started.challenge, code=code, new_password=NEW_PASSWORD
            ),
        ),
        timeout=15,
    )
    for tokens in (first, second):
        await refused_revoked(probe(stack, tokens.access_token), REVOKED_WITHIN_S)


async def test_logout_revokes_the_access_token_at_the_edge(stack: LiveStack) -> None:
    patient = await sign_up(stack)
    tokens = await log_in(stack, patient)
    await probe(stack, tokens.access_token)()
    await identity(stack.patient_channel()).Logout(
        ID.LogoutRequest(request_id=rid()), metadata=bearer(tokens.access_token), timeout=10
    )
    await refused_revoked(probe(stack, tokens.access_token), REVOKED_WITHIN_S)


async def test_change_password_revokes_the_other_sessions_at_the_edge(stack: LiveStack) -> None:
    patient = await sign_up(stack)
    kept = await log_in(stack, patient)
    other = await log_in(stack, patient)
    changed = await identity(stack.patient_channel()).ChangePassword(
        ID.ChangePasswordRequest(
            request_id=rid(), current_password=patient.password, new_password=NEW_PASSWORD
        ),
        metadata=bearer(kept.access_token),
        timeout=15,
    )
    assert changed.revoked_sessions == 1
    await refused_revoked(probe(stack, other.access_token), REVOKED_WITHIN_S)
    await probe(stack, kept.access_token)()  # the session that changed it goes on


async def test_gateway_started_after_a_revocation_still_refuses_it(stack: LiveStack) -> None:
    patient = await sign_up(stack)
    seen_live, made_while_down, untouched = [await log_in(stack, patient) for _ in range(3)]
    await reuse_refresh_token(identity(stack.patient_channel()), seen_live.refresh_token)
    await refused_revoked(probe(stack, seen_live.access_token), REVOKED_WITHIN_S)
    await stack.stop_service("gateway")
    try:
        # No gateway runs: the session is revoked at identity itself (an anonymous method).
        async with grpc.aio.insecure_channel(stack.target("identity")) as channel:
            await reuse_refresh_token(identity(channel), made_while_down.refresh_token)
    finally:
        # The launcher waits for SERVING, which the gateway answers once it has replayed.
        await stack.start_service("gateway")
    for tokens in (seen_live, made_while_down):
        await expect(probe(stack, tokens.access_token)(), S.UNAUTHENTICATED, "SESSION_REVOKED")
    await probe(stack, untouched.access_token)()


async def test_revocation_made_while_nats_is_down_arrives_after_it_returns(
    stack: LiveStack,
) -> None:
    patient = await sign_up(stack)
    tokens = await log_in(stack, patient)
    check = probe(stack, tokens.access_token)
    await check()
    nats = stack.dev.nats
    assert nats.proc is not None
    nats.proc.kill()
    nats.proc.wait(10)
    nats.proc = None
    try:
        # identity commits the revocation and keeps the event in its outbox meanwhile.
        await reuse_refresh_token(identity(stack.patient_channel()), tokens.refresh_token)
    finally:
        nats.start()  # same port and JetStream store, as a restarted pod with its volume
        wait_for_port(nats.port)
    await refused_revoked(check, REVOKED_WITHIN_S)
    # The feed is live again, not only caught up: a revocation made now arrives too.
    later = await log_in(stack, patient)
    await probe(stack, later.access_token)()
    await reuse_refresh_token(identity(stack.patient_channel()), later.refresh_token)
    await refused_revoked(probe(stack, later.access_token), REVOKED_WITHIN_S)


async def test_a_full_revocation_list_refuses_patient_tokens_rather_than_forget(
    stack: LiveStack,
) -> None:
    """Another replica that may keep one revoked session: with two revoked in the last hour
    it must refuse every patient token (fail closed), not drop a revocation."""
    patient = await sign_up(stack)
    first, second, valid = [await log_in(stack, patient) for _ in range(3)]
    for tokens in (first, second):
        await reuse_refresh_token(identity(stack.patient_channel()), tokens.refresh_token)
        await refused_revoked(probe(stack, tokens.access_token), REVOKED_WITHIN_S)
    await probe(stack, valid.access_token)()  # the launcher's gateway, with room, accepts it
    gateway = await start_gateway(second_gateway(stack, revocation_max_entries=1))
    try:
        creds = grpc.ssl_channel_credentials(stack.ca_pem)
        async with grpc.aio.secure_channel(f"localhost:{gateway.patient_port}", creds) as channel:
            stub = identity(channel)
            await expect(
                stub.ListProfessionals(
                    ID.ListProfessionalsRequest(page_size=1),
                    metadata=bearer(valid.access_token),
                    timeout=10,
                ),
                S.UNAVAILABLE,
                "REVOCATIONS_OVERFLOW",
            )
    finally:
        await gateway.stop(0)


def test_revoked_sessions_expire_prune_and_fail_closed() -> None:
    """The list's own rules on a fake clock: kept for the horizon, pruned after, refused
    while incomplete, stale or full."""
    now = [1000.0]
    sessions = RevokedSessions(
        horizon_s=100.0,
        max_entries=2,
        max_staleness_s=30.0,
        clock=lambda: now[0],
        monotonic=lambda: now[0],
    )

    def reason(session_id: str) -> str | None:
        try:
            sessions.check(session_id)
        except ServiceError as exc:
            return exc.reason
        return None

    assert reason("a") == "REVOCATIONS_NOT_READY"
    sessions.synced()
    sessions.revoke("a", revoked_at=now[0])
    sessions.revoke("old", revoked_at=now[0] - 100.0)  # its tokens have all expired
    assert (reason("a"), reason("b"), len(sessions)) == ("SESSION_REVOKED", None, 1)
    now[0] += 31.0
    assert reason("b") == "REVOCATIONS_STALE"
    sessions.synced()
    sessions.revoke("b", revoked_at=now[0])
    sessions.revoke("c", revoked_at=now[0])  # no room: every patient token refused
    assert reason("d") == "REVOCATIONS_OVERFLOW"
    now[0] += 70.0  # "a" expired (1000 + 100): pruned at the next revocation that needs room
    sessions.synced()
    assert reason("a") == "REVOCATIONS_OVERFLOW"  # until "c" (1031 + 100) could be forgotten
    now[0] += 31.0
    sessions.synced()
    assert (reason("a"), reason("c"), reason("d")) == (None, None, None)
    sessions.revoke("e", revoked_at=now[0])
    assert (reason("e"), len(sessions)) == ("SESSION_REVOKED", 1)


# -- undecodable input, upstream failures --------------------------------------------------


async def test_undecodable_request_is_invalid_argument_for_every_method(stack: LiveStack) -> None:
    anonymous = stack.patient_channel().unary_unary(IDENTITY + "StartLogin")
    err = await expect(anonymous(BAD_BYTES, timeout=10), S.INVALID_ARGUMENT, "REQUEST_MALFORMED")
    assert "Exception" not in (err.details() or "")
    # Authenticated, without a record field (nothing parsed it before).
    doctor = stack.card_channel("doctor").unary_unary(IDENTITY + "ListProfessionals")
    await expect(doctor(BAD_BYTES, timeout=10), S.INVALID_ARGUMENT, "REQUEST_MALFORMED")
    # A method that needs a caller still asks for one first.
    no_caller = stack.patient_channel().unary_unary(IDENTITY + "ListProfessionals")
    await expect(no_caller(BAD_BYTES, timeout=10), S.UNAUTHENTICATED, "UNAUTHENTICATED")
    # A service answers the same when called directly (kit's interceptor decodes).
    async with grpc.aio.insecure_channel(stack.target("identity")) as channel:
        direct = channel.unary_unary(IDENTITY + "StartLogin")
        err = await expect(direct(BAD_BYTES, timeout=10), S.INVALID_ARGUMENT, "REQUEST_MALFORMED")
        assert "Exception" not in (err.details() or "")


async def test_undecodable_message_in_a_client_stream_is_refused(stack: LiveStack) -> None:
    ingest = stack.card_channel("amo").stream_unary(
        "/dmp.history.v1.HistoryFeedService/IngestClaims"
    )

    async def batches() -> AsyncIterator[bytes]:
        # A valid first batch (its line is rejected, nothing is stored), then garbage.
        first = history_pb2.IngestClaimsRequest(request_id=rid(), lines=[history_pb2.ClaimLine()])
        yield first.SerializeToString()
        yield BAD_BYTES

    await expect(ingest(batches(), timeout=15), S.INVALID_ARGUMENT, "REQUEST_MALFORMED")


class _FaultyIdentity(grpc.GenericRpcHandler):  # type: ignore[misc]
    """An upstream with bugs: an exception (UNKNOWN with its text), an INTERNAL quoting a
    traceback, and an ordinary NOT_FOUND that must pass unchanged."""

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method.rsplit("/", 1)[-1]

        async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            if method == "StartLogin":
                raise RuntimeError("patient 1 84 12 75 123 456 78: diagnosis leaked")
            if method == "VerifyOneTimeCode":
                await context.abort(S.INTERNAL, 'Traceback: File "x.py", KeyError: secret')
            await context.abort(S.NOT_FOUND, "No such thing.")
            return b""

        return grpc.unary_unary_rpc_method_handler(answer)


async def test_upstream_unknown_or_internal_is_replaced_with_the_trace_id(
    stack: LiveStack,
) -> None:
    """A second gateway (in this process, the stack's PKI, NATS and keys) whose identity
    upstream is faulty: the real gateway code between a client and a broken service."""
    faulty = grpc.aio.server()
    faulty.add_generic_rpc_handlers((_FaultyIdentity(),))
    upstream = faulty.add_insecure_port("127.0.0.1:0")
    await faulty.start()
    gateway = await start_gateway(second_gateway(stack, identity_target=f"127.0.0.1:{upstream}"))
    try:
        creds = grpc.ssl_channel_credentials(stack.ca_pem)
        async with grpc.aio.secure_channel(f"localhost:{gateway.patient_port}", creds) as channel:
            for method in ("StartLogin", "VerifyOneTimeCode"):
                trace_id = secrets.token_hex(16)
                traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
                call = channel.unary_unary(IDENTITY + method)
                err = await expect(
                    call(b"", metadata=(("traceparent", traceparent),), timeout=10), S.INTERNAL
                )
                for leaked in ("RuntimeError", "diagnosis", "Traceback", "secret"):
                    assert leaked not in (err.details() or "")
                info = error_info(err)
                assert info is not None
                assert (info.reason, info.metadata["trace_id"]) == ("INTERNAL", trace_id)
            other = channel.unary_unary(IDENTITY + "RefreshToken")
            err = await expect(other(b"", timeout=10), S.NOT_FOUND)
            assert err.details() == "No such thing."
    finally:
        await gateway.stop(0)
        await faulty.stop(0)


# -- every card registered -------------------------------------------------------------------


async def test_unregistered_staff_and_service_cards_are_refused(stack: LiveStack) -> None:
    ca = pki.load_authority(stack.pki_dir)
    cards = [
        pki.issue_card(ca, pki.CardFields("staff", "Agent Inconnu", roles=("guichet_amo",))),
        pki.issue_card(ca, pki.CardFields("service", "Feeder X", roles=("alimentation_amo",))),
    ]
    for card in cards:
        stub = identity(stack.card_channel((card.cert_pem, card.key_pem)))
        await expect(
            stub.IssueCreationCode(
                ID.IssueCreationCodeRequest(request_id=rid(), ins=make_ins()), timeout=10
            ),
            S.UNAUTHENTICATED,
            "CERTIFICATE_UNKNOWN",
        )


async def test_registered_staff_card_works_and_its_resolution_joins_the_trace(
    stack: LiveStack,
) -> None:
    ca = pki.load_authority(stack.pki_dir)
    card = pki.issue_card(ca, pki.CardFields("staff", "Agent CPAM 13", roles=("guichet_amo",)))
    stub = identity(stack.card_channel((card.cert_pem, card.key_pem)))
    request = ID.IssueCreationCodeRequest(request_id=rid(), ins=make_ins())
    await expect(stub.IssueCreationCode(request, timeout=10), S.UNAUTHENTICATED)
    # Registered the way the launcher registers cards: the same card now works.
    cert = x509.load_pem_x509_certificate(card.cert_pem)
    method, registration = registration_request(cert, pki.card_fields(cert))
    async with grpc.aio.insecure_channel(stack.target("identity")) as channel:
        await getattr(identity(channel), method)(
            registration,
            metadata=stack.signed(principals.internal_principal("test"), IDENTITY + method),
            timeout=10,
        )
    trace_id = secrets.token_hex(16)
    traceparent = (("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"),)
    issued = await stub.IssueCreationCode(request, metadata=traceparent, timeout=10)
    assert issued.creation_code

    def resolved_in_trace() -> bool:
        for line in stack.log_file("identity").read_text().splitlines():
            if trace_id in line and line.startswith("{"):
                entry = json.loads(line)
                if entry.get("method") == IDENTITY + "ResolveCertificate":
                    return entry.get("trace_id") == trace_id
        return False

    await until(resolved_in_trace, "identity logged ResolveCertificate in the call's trace")


# -- CRL reload --------------------------------------------------------------------------------


async def test_card_revoked_while_running_is_refused_without_restart(stack: LiveStack) -> None:
    absent = R.GetDossierRequest(name="dossiers/" + "0" * 32)
    stolen = records(stack.card_channel("stolen"))
    await expect(stolen.GetDossier(absent, timeout=10), S.NOT_FOUND)  # authenticated
    crl = stack.pki_dir / pki.CRL
    good_before = crl.read_bytes()
    pki_revoke("stolen", directory=stack.pki_dir)  # what `dmp pki revoke stolen` does
    err = await until_refused(
        lambda: stolen.GetDossier(absent, timeout=10),
        S.UNAUTHENTICATED,
        within_s=CRL_RELOADED_WITHIN_S,
    )
    assert error_info(err).reason == "CERTIFICATE_REVOKED"  # type: ignore[union-attr]
    good = crl.read_bytes()
    assert good != good_before
    # A new list that is not the CA's (it would un-revoke everything) is ignored.
    try:
        invalid = gateway_log_count(stack, "crl_invalid")
        crl.write_bytes(pki.create_crl(pki.create_authority("Evil CA")))
        await until(
            lambda: gateway_log_count(stack, "crl_invalid") > invalid,
            "the gateway looked at the forged CRL",
        )
        for card in ("stolen", "revoked"):
            await expect(
                records(stack.card_channel(card)).GetDossier(absent, timeout=10),
                S.UNAUTHENTICATED,
                "CERTIFICATE_REVOKED",
            )
        await expect(records(stack.card_channel("doctor")).GetDossier(absent), S.NOT_FOUND)
    finally:
        crl.write_bytes(good)


def gateway_log_count(stack: LiveStack, event: str) -> int:
    text = stack.log_file("gateway").read_text()
    return sum(1 for line in text.splitlines() if f'"event": "{event}"' in line)


async def until(condition: Callable[[], bool], what: str, within_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not after {within_s}s: {what}")
        await asyncio.sleep(0.1)


# -- ambiguous credentials ---------------------------------------------------------------------


async def test_two_authorization_headers_are_refused(stack: LiveStack) -> None:
    patient = await sign_up(stack)
    tokens = await log_in(stack, patient)
    stub = identity(stack.patient_channel())
    other = stack.token(make_ins())
    for pair in ((tokens.access_token, other), (tokens.access_token, tokens.access_token)):
        metadata = tuple(("authorization", f"Bearer {token}") for token in pair)
        await expect(
            stub.ListProfessionals(ID.ListProfessionalsRequest(), metadata=metadata, timeout=10),
            S.UNAUTHENTICATED,
            "CREDENTIALS_AMBIGUOUS",
        )
    # Even on an anonymous method: which credential was meant is unknowable.
    await expect(
        stub.StartLogin(
            ID.StartLoginRequest(request_id=rid(), identifier=patient.ins, password=PASSWORD),
            metadata=(("authorization", "Bearer a"), ("authorization", "Bearer b")),
            timeout=10,
        ),
        S.UNAUTHENTICATED,
        "CREDENTIALS_AMBIGUOUS",
    )


async def test_bearer_token_next_to_a_card_is_refused(stack: LiveStack) -> None:
    token = stack.token(make_ins())
    stub = identity(stack.card_channel("doctor"))
    request = ID.ListProfessionalsRequest(page_size=1)
    await eventually(lambda: stub.ListProfessionals(request, timeout=10))  # the card alone works
    await expect(
        stub.ListProfessionals(request, metadata=bearer(token), timeout=10),
        S.UNAUTHENTICATED,
        "CREDENTIALS_AMBIGUOUS",
    )


async def test_a_gateway_is_not_serving_until_its_revocation_list_is_complete(
    stack: LiveStack,
) -> None:
    """grpcio's health servicer answers SERVING from birth: the gateway must say NOT_SERVING
    until its revocation replay has caught up, or the launcher and a Kubernetes readiness probe
    would route patients to a replica that can only refuse them (REVOCATIONS_NOT_READY)."""
    patient = await sign_up(stack)
    tokens = await log_in(stack, patient)
    nowhere = f"nats://127.0.0.1:{free_port()}"  # nothing listens: the replay cannot start
    gateway = await start_gateway(
        second_gateway(
            stack,
            nats_url=nowhere,
            invalidate_on_events=False,
            assertion_replay_shared=False,
            revocation_start_wait_s=0.5,
        )
    )
    try:
        creds = grpc.ssl_channel_credentials(stack.ca_pem)
        async with grpc.aio.secure_channel(f"localhost:{gateway.patient_port}", creds) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            await expect(
                identity(channel).ListProfessionals(
                    ID.ListProfessionalsRequest(page_size=1),
                    metadata=bearer(tokens.access_token),
                    timeout=10,
                ),
                S.UNAVAILABLE,
                "REVOCATIONS_NOT_READY",
            )
    finally:
        await gateway.stop(0)
