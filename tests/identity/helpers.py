"""Helpers of the identity tests (clients, patients, sinks)."""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from dmp.authz.v1 import principal_pb2
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp_dev.testing import principals
from kit import ins as ins_mod
from kit.db import create_engine, session_factory
from services.identity import models
from services.identity.settings import IdentitySettings
from tests.fixtures.notify import NotifySinks

SERVICE = "/dmp.identity.v1.IdentityService/"
PASSWORD = "Correct-Horse-42-battery"


def random_ins(rng: random.Random | None = None) -> str:
    r = rng or random.Random()
    nir = (
        str(r.choice([1, 2]))
        + f"{r.randrange(100):02d}"
        + f"{r.randrange(1, 13):02d}"
        + f"{r.randrange(1, 96):02d}"
        + f"{r.randrange(1000000):06d}"
    )
    return ins_mod.with_key(nir)


def new_phone() -> str:
    return "+336" + f"{random.randrange(10**8):08d}"


def rid() -> str:
    return str(uuid.uuid4())


def md(principal: principal_pb2.Principal, method: str) -> tuple[tuple[str, bytes], ...]:
    return principals.metadata(principal, SERVICE + method)


def desk() -> principal_pb2.Principal:
    return principals.staff("agent-cpam-1", ("guichet_amo",))


@dataclass
class Patient:
    ins: str
    password: str
    phone: str
    email: str
    account: str


def identity_settings(
    url: str, nats_url: str, notify_target: str, key_dir: Path
) -> IdentitySettings:
    return IdentitySettings(
        database_url=url,
        nats_url=nats_url,
        notify_target=notify_target,
        token_signing_key_file=str(key_dir / "token_signing_key.pem"),
        token_signing_key_create=True,
        # Cheap argon2 for tests; the benchmark uses the production defaults.
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        argon2_parallelism=1,
        shutdown_grace_s=0.5,
        log_json=False,
    )


class Rows:
    """Row counts of every identity table, to prove a refused request wrote nothing."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.sessions = session_factory(self.engine)

    async def counts(self) -> dict[str, int]:
        out = {}
        async with self.sessions() as session:
            for table in models.metadata.sorted_tables:
                out[table.name] = (
                    await session.execute(select(func.count()).select_from(table))
                ).scalar_one()
        return out

    async def scalar(self, query: object) -> object:
        async with self.sessions() as session:
            return (await session.execute(query)).scalar_one_or_none()  # type: ignore[call-overload]


async def wait_code(sinks: NotifySinks, destination: str, before: int) -> str:
    """The code of the message after the `before` first ones to `destination`."""
    for _ in range(200):
        if sinks.count_for(destination) > before:
            code = sinks.last_code_for(destination)
            assert code is not None
            return code
        await asyncio.sleep(0.02)
    raise AssertionError("no code delivered")


async def register_patient(
    stub: identity_pb2_grpc.IdentityServiceStub, *, email_only: bool = False
) -> Patient:
    ins = random_ins()
    issued = await stub.IssueCreationCode(
        identity_pb2.IssueCreationCodeRequest(request_id=rid(), ins=ins),
        metadata=md(desk(), "IssueCreationCode"),
    )
    phone = "" if email_only else new_phone()
    email = f"p.{uuid.uuid4().hex[:10]}@exemple.fr"
    account = await stub.RegisterPatientAccount(
        identity_pb2.RegisterPatientAccountRequest(
            request_id=rid(),
            ins=ins,
            creation_code=issued.creation_code,
            password=PASSWORD,
            email=email,
            mobile_phone=phone,
        )
    )
    return Patient(ins, PASSWORD, phone, email, account.name)


async def start_login(
    stub: identity_pb2_grpc.IdentityServiceStub,
    sinks: NotifySinks,
    patient: Patient,
) -> tuple[identity_pb2.StartLoginResponse, str]:
    destination = patient.phone or patient.email
    before = sinks.count_for(destination)
    started = await stub.StartLogin(
        identity_pb2.StartLoginRequest(
            request_id=rid(), identifier=patient.ins, password=patient.password
        )
    )
    return started, await wait_code(sinks, destination, before)


async def login(
    stub: identity_pb2_grpc.IdentityServiceStub, sinks: NotifySinks, patient: Patient
) -> identity_pb2.SessionTokens:
    started, code = await start_login(stub, sinks, patient)
    verified = await stub.VerifyOneTimeCode(
        identity_pb2.VerifyOneTimeCodeRequest(
            request_id=rid(), challenge=started.challenge, code=code
        )
    )
    return verified.tokens


def patient_principal(
    patient: Patient, tokens: identity_pb2.SessionTokens
) -> principal_pb2.Principal:
    return principals.patient(
        patient.ins,
        subject=patient.account.removeprefix("accounts/"),
        session_id=tokens.session.rsplit("/", 1)[1],
    )
