"""Calls without a credential are limited per client address; wrong passwords throttle an
identifier.

The limiter's parts are checked on their own (peer strings, memory bound). The rest goes
through a gateway replica of each test's own (tests/gateway/replica.py: in this process, in
front of the session's launcher-started services), with low limits: it allows
ANONYMOUS_BURST calls without a credential per address (refill ANONYMOUS_PER_S); the
session's identity throttles an identifier after its default MAX_FAILURES wrong passwords.
The replica listens on `[::]`, so a test calls from two addresses: `::1` (the flood) and
`127.0.0.1` (everything else, well under the burst). The bucket's refill is seen on a
shifted process clock (kit.clock), not waited for; the throttle's end is tested on identity's
manual clock (tests/identity/test_identity_login_throttle.py).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
import structlog.testing
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp_dev.testing.stack import HOST, LiveStack
from gateway.app import RunningGateway
from gateway.ratelimit import RateLimiter, client_address
from kit import clock
from kit.errors import ServiceError, error_info
from services.identity.settings import IdentitySettings
from tests.e2e.helpers import bearer, mails_to, one_time_code, rid, rpps
from tests.fixtures.records import make_ins
from tests.gateway.replica import replica

ID = identity_pb2
S = grpc.StatusCode
ANONYMOUS_PER_S = 0.1  # slow: an exhausted bucket stays so for 10 s
ANONYMOUS_BURST = 30
FLOOD = 45
# The session stack's identity runs with its defaults.
MAX_FAILURES: int = IdentitySettings.model_fields["login_max_failures"].default
THROTTLE_S: int = IdentitySettings.model_fields["login_throttle_s"].default
PASSWORD = "Correct-Horse-42-battery"
V4, V6 = "127.0.0.1", "[::1]"


# -- the limiter's parts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("ipv4:203.0.113.7:51234", "203.0.113.7"),
        ("ipv4:203.0.113.7:1", "203.0.113.7"),
        ("ipv6:[2001:db8:1:2:3:4:5:6]:51234", "2001:db8:1:2::/64"),
        ("ipv6:%5B2001:db8:1:2::9%5D:443", "2001:db8:1:2::/64"),
        ("ipv6:%5B::1%5D:45550", "::/64"),
        ("ipv6:[::ffff:198.51.100.9]:8443", "198.51.100.9"),
        ("ipv6:[fe80::1%25eth0]:8443", "fe80::/64"),
        ("unix:/run/gateway.sock", "unknown"),
        ("ipv4:not-an-address:1", "unknown"),
        ("", "unknown"),
    ],
)
def test_client_address_is_the_peer_without_its_port(peer: str, key: str) -> None:
    assert client_address(peer) == key


def test_ipv6_prefix_is_configurable() -> None:
    assert client_address("ipv6:[2001:db8:1:2::9]:1", 48) == "2001:db8:1::/48"
    assert client_address("ipv6:[2001:db8:1:2::9]:1", 128) == "2001:db8:1:2::9/128"


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_refills_and_says_when() -> None:
    ticks = Ticks()
    limiter = RateLimiter(2.0, 3, ticks)
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(ServiceError) as refused:
        limiter.take("a")
    assert (refused.value.code, refused.value.reason) == (S.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert refused.value.retry_after_s == pytest.approx(0.5)
    limiter.take("b")  # another key has its own bucket
    ticks.now += 0.5
    limiter.take("a")


def test_memory_is_bounded_without_forgetting_a_debt() -> None:
    ticks = Ticks()
    limiter = RateLimiter(1.0, 10, ticks, max_buckets=100)
    for n in range(100):
        limiter.take(f"idle-{n}")
    assert len(limiter) == 100
    ticks.now += 1.0  # each idle bucket is 9 + 1 = full again: the same as none
    for _ in range(10):
        limiter.take("flood")
    assert len(limiter) == 1
    with pytest.raises(ServiceError):
        limiter.take("flood")  # its empty bucket was kept
    # Past the cap the least recently used bucket goes, whatever its level.
    for n in range(150):
        limiter.take(f"spray-{n}")
    assert len(limiter) == 100


# -- through the gateway -------------------------------------------------------------------


@dataclass
class Limited:
    """The session stack behind a gateway replica of this test with low anonymous limits."""

    stack: LiveStack
    gateway: RunningGateway
    opened: list[grpc.aio.Channel] = field(default_factory=list)

    def card(self, stem: str) -> tuple[bytes, bytes]:
        return self.stack.card(stem)

    def token(self, ins: str) -> str:
        return self.stack.token(ins)

    @property
    def ca_pem(self) -> bytes:
        return self.stack.ca_pem

    @property
    def mail_dir(self) -> Path:
        return self.stack.mail_dir


@pytest_asyncio.fixture(loop_scope="session")
async def limited(stack: LiveStack) -> AsyncIterator[Limited]:
    async with replica(
        stack,
        grpc_host="[::]",
        anonymous_rate_limit_per_s=ANONYMOUS_PER_S,
        anonymous_rate_limit_burst=ANONYMOUS_BURST,
    ) as gateway:
        limited = Limited(stack, gateway)
        yield limited
        for channel in limited.opened:
            await channel.close()


def patient_port(limited: Limited, host: str) -> identity_pb2_grpc.IdentityServiceStub:
    """The patient port, from `host` (the certificate names `localhost`)."""
    channel = grpc.aio.secure_channel(
        f"{host}:{limited.gateway.patient_port}",
        grpc.ssl_channel_credentials(limited.ca_pem),
        options=[("grpc.ssl_target_name_override", HOST)],
    )
    limited.opened.append(channel)
    return identity_pb2_grpc.IdentityServiceStub(channel)


def card_port(limited: Limited, host: str, card: str) -> identity_pb2_grpc.IdentityServiceStub:
    cert, key = limited.card(card)
    channel = grpc.aio.secure_channel(
        f"{host}:{limited.gateway.port}",
        grpc.ssl_channel_credentials(limited.ca_pem, private_key=key, certificate_chain=cert),
        options=[("grpc.ssl_target_name_override", HOST)],
    )
    limited.opened.append(channel)
    return identity_pb2_grpc.IdentityServiceStub(channel)


def reason(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, str]:
    info = error_info(error)
    assert info is not None, (error.code(), error.details())
    return error.code(), info.reason, info.domain


def retry_delay(error: grpc.aio.AioRpcError) -> timedelta:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta()
    raise AssertionError("no RetryInfo")


async def failing(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call  # type: ignore[misc]
    return exc.value


def refresh(stub: identity_pb2_grpc.IdentityServiceStub) -> object:
    """A cheap anonymous call: identity answers UNAUTHENTICATED TOKEN_INVALID."""
    return stub.RefreshToken(
        ID.RefreshTokenRequest(request_id=rid(), refresh_token="not-a-token"), timeout=10
    )


TOKEN_INVALID = (S.UNAUTHENTICATED, "TOKEN_INVALID", "identity.dmp")
RATE_LIMITED = (S.RESOURCE_EXHAUSTED, "RATE_LIMITED", "gateway.dmp")


async def test_a_flood_from_one_address_is_limited_and_others_are_not(
    limited: Limited,
) -> None:
    flood = patient_port(limited, V6)
    answers = [await failing(refresh(flood)) for _ in range(FLOOD)]
    reasons = [reason(a) for a in answers]
    passed = reasons.count(TOKEN_INVALID)
    refused = [a for a in answers if reason(a) == RATE_LIMITED]
    print(f"{FLOOD} anonymous calls from ::1: {passed} reached identity, {len(refused)} limited")
    assert passed + len(refused) == FLOOD
    assert refused, "no call was limited"
    assert passed >= ANONYMOUS_BURST  # the burst, then what refilled meanwhile
    for error in refused:
        assert timedelta(0) < retry_delay(error) <= timedelta(seconds=1 / ANONYMOUS_PER_S)
    # Another address has its own bucket.
    assert reason(await failing(refresh(patient_port(limited, V4)))) == TOKEN_INVALID
    # Authenticated callers from the limited address have theirs: a card and a patient token.
    doctor = card_port(limited, V6, "doctor")
    name = f"professionals/{rpps('pharmacist')}"
    found = await doctor.GetProfessional(ID.GetProfessionalRequest(name=name), timeout=10)
    assert found.rpps == rpps("pharmacist")
    listed = await flood.ListProfessionals(
        ID.ListProfessionalsRequest(filter='profession_code = "21"'),
        metadata=bearer(limited.token(make_ins())),
        timeout=10,
    )
    assert rpps("pharmacist") in [p.rpps for p in listed.professionals]
    # A call without credential to another method spends the address's tokens too.
    error = await failing(
        flood.ListProfessionals(
            ID.ListProfessionalsRequest(filter='profession_code = "21"'), timeout=10
        )
    )
    assert reason(error) == RATE_LIMITED
    # The address gets through again once its bucket has refilled: the retry delay later on
    # the process clock the replica's limiter reads.
    shifted = clock.ShiftedClock(base=clock.current())
    with clock.use(shifted):
        error = await failing(refresh(flood))
        assert reason(error) == RATE_LIMITED
        shifted.advance(retry_delay(error))
        assert reason(await failing(refresh(flood))) == TOKEN_INVALID


# -- wrong passwords ------------------------------------------------------------------------


async def new_patient(limited: Limited) -> tuple[str, str]:
    """(INS, e-mail) of an account signed up through the gateway (from 127.0.0.1)."""
    ins = make_ins()
    email = f"patient.{uuid.uuid4().hex[:10]}@exemple.fr"
    desk = card_port(limited, V4, "desk")
    issued = await desk.IssueCreationCode(
        ID.IssueCreationCodeRequest(request_id=rid(), ins=ins), timeout=10
    )
    await patient_port(limited, V4).RegisterPatientAccount(
        ID.RegisterPatientAccountRequest(
            request_id=rid(),
            ins=ins,
            creation_code=issued.creation_code,
            password=PASSWORD,
            email=email,
        ),
        timeout=15,
    )
    return ins, email


def start(limited: Limited, ins: str, password: str) -> object:
    return patient_port(limited, V4).StartLogin(
        ID.StartLoginRequest(request_id=rid(), identifier=ins, password=password), timeout=15
    )


INVALID = (S.UNAUTHENTICATED, "INVALID_CREDENTIALS", "identity.dmp")
THROTTLED = (S.RESOURCE_EXHAUSTED, "LOGIN_THROTTLED", "identity.dmp")


async def test_wrong_passwords_throttle_an_identifier_with_or_without_account(
    limited: Limited,
) -> None:
    ins, email = await new_patient(limited)
    unknown = make_ins()
    with structlog.testing.capture_logs() as gateway_logs:  # the replica logs here
        for identifier in (ins, unknown):
            for n in range(MAX_FAILURES):
                error = await failing(start(limited, identifier, f"wrong-{n}-{PASSWORD}"))
                assert reason(error) == INVALID, (identifier == ins, n)
        # The right password is refused too, and no code is sent.
        sent = len(mails_to(limited.mail_dir, email))
        account = await failing(start(limited, ins, PASSWORD))
        nobody = await failing(start(limited, unknown, PASSWORD))
        for error in (account, nobody):
            assert reason(error) == THROTTLED
            assert timedelta(seconds=THROTTLE_S - 60) < retry_delay(error)
            assert retry_delay(error) <= timedelta(seconds=THROTTLE_S)
        assert account.details() == nobody.details()
        assert reason(await failing(start(limited, ins, "wrong-" + PASSWORD))) == THROTTLED
        assert len(mails_to(limited.mail_dir, email)) == sent
    # Neither the identifier without account nor a password reaches a log.
    for text in (limited.stack.log_file("identity").read_text(), repr(gateway_logs)):
        assert unknown not in text
        assert PASSWORD not in text


async def test_other_identifiers_log_in_while_one_is_throttled(limited: Limited) -> None:
    throttled, _ = await new_patient(limited)
    for n in range(MAX_FAILURES):
        await failing(start(limited, throttled, f"wrong-{n}-{PASSWORD}"))
    assert reason(await failing(start(limited, throttled, PASSWORD))) == THROTTLED
    ins, email = await new_patient(limited)
    before = len(mails_to(limited.mail_dir, email))
    started = await start(limited, ins, PASSWORD)  # type: ignore[misc]
    code = await one_time_code(limited.mail_dir, email, before)
    verified = await patient_port(limited, V4).VerifyOneTimeCode(
        ID.VerifyOneTimeCodeRequest(request_id=rid(), challenge=started.challenge, code=code),
        timeout=10,
    )
    assert verified.tokens.access_token
