"""Establishments in the directory: registration (FINESS rule, kind, certificates), staff
membership, certificate resolution, and the refusals, each with its reason."""

from __future__ import annotations

import hashlib
import random

import grpc
import pytest

from dmp.identity.v1 import identity_pb2
from dmp_dev.testing import principals
from kit import finess
from kit.errors import error_info
from tests.identity.helpers import md, rid
from tests.identity.test_identity_directory import create, self_signed_der

I = identity_pb2  # noqa: E741 - the generated module
ADMIN = principals.internal("dmp-admin")
GATEWAY = principals.internal("gateway")
DOCTOR = principals.professional("10000000009")


def new_finess() -> str:
    first = "75" + f"{random.randrange(10**6):06d}"
    return first + finess.check_digit(first)


async def register(stub, number: str | None = None, **kw) -> tuple[I.Establishment, str]:  # type: ignore[no-untyped-def]
    sha = hashlib.sha256(self_signed_der("Hôpital")).hexdigest()
    fields = {
        "finess": number or new_finess(),
        "display_name": "Hôpital Test",
        "kind": I.ESTABLISHMENT_KIND_HOSPITAL,
        "certificate_sha256": [sha],
        **kw,
    }
    created = await stub.CreateEstablishment(
        I.CreateEstablishmentRequest(request_id=rid(), establishment=I.Establishment(**fields)),
        metadata=md(ADMIN, "CreateEstablishment"),
    )
    return created, sha


async def add_member(stub, parent: str, professional: str) -> I.EstablishmentMember:  # type: ignore[no-untyped-def]
    return await stub.AddEstablishmentMember(
        I.AddEstablishmentMemberRequest(request_id=rid(), parent=parent, professional=professional),
        metadata=md(ADMIN, "AddEstablishmentMember"),
    )


async def get_member(stub, name: str) -> I.EstablishmentMember:  # type: ignore[no-untyped-def]
    return await stub.GetEstablishmentMember(
        I.GetEstablishmentMemberRequest(name=name), metadata=md(GATEWAY, "GetEstablishmentMember")
    )


async def refused(call, code: grpc.StatusCode, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == reason, info


async def test_register_resolve_and_staff(stub) -> None:
    created, sha = await register(stub)
    assert created.name == f"establishments/{created.finess}"
    assert list(created.certificate_sha256) == [sha]
    holder = await stub.ResolveCertificate(
        I.ResolveCertificateRequest(sha256_fingerprint=sha),
        metadata=md(GATEWAY, "ResolveCertificate"),
    )
    assert holder.kind == I.CARD_KIND_ESTABLISHMENT
    assert holder.WhichOneof("holder") == "establishment"
    assert (holder.establishment.finess, holder.establishment.display_name) == (
        created.finess,
        "Hôpital Test",
    )

    doctor = await create(stub, specialty_code="SM27")
    member = await add_member(stub, created.name, doctor.name)
    assert member.name == f"{created.name}/members/{doctor.rpps}"
    got = await get_member(stub, member.name)
    assert got.establishment_display_name == "Hôpital Test"
    assert (got.professional.rpps, got.professional.specialty_code) == (doctor.rpps, "SM27")

    # Someone in the directory but not on this staff: one answer, whatever is missing.
    other = await create(stub)
    await refused(
        get_member(stub, f"{created.name}/members/{other.rpps}"),
        grpc.StatusCode.NOT_FOUND,
        "MEMBER_NOT_FOUND",
    )
    await refused(
        get_member(stub, f"establishments/{new_finess()}/members/{doctor.rpps}"),
        grpc.StatusCode.NOT_FOUND,
        "MEMBER_NOT_FOUND",
    )
    await refused(
        add_member(stub, created.name, doctor.name),
        grpc.StatusCode.ALREADY_EXISTS,
        "MEMBER_EXISTS",
    )
    await refused(
        add_member(stub, f"establishments/{new_finess()}", doctor.name),
        grpc.StatusCode.NOT_FOUND,
        "ESTABLISHMENT_NOT_FOUND",
    )
    await refused(
        add_member(stub, created.name, "professionals/10000000009"),
        grpc.StatusCode.NOT_FOUND,
        "PROFESSIONAL_NOT_FOUND",
    )


async def test_registration_refusals(stub) -> None:
    created, sha = await register(stub)
    await refused(
        register(stub, created.finess), grpc.StatusCode.ALREADY_EXISTS, "ESTABLISHMENT_EXISTS"
    )
    await refused(
        register(stub, certificate_sha256=[sha]),
        grpc.StatusCode.ALREADY_EXISTS,
        "CERTIFICATE_ALREADY_REGISTERED",
    )
    # An establishment's certificate is not a professional's either.
    await refused(
        create(stub, certificate_sha256=[sha]),
        grpc.StatusCode.ALREADY_EXISTS,
        "CERTIFICATE_ALREADY_REGISTERED",
    )
    bad_key = created.finess[:8] + str((int(created.finess[8]) + 1) % 10)
    for number, reason in (
        ("75080344", "INVALID_FINESS"),
        ("2A0000001", "INVALID_FINESS"),
        ("７５０８０３４４７", "INVALID_FINESS"),
        (bad_key, "FINESS_CHECK_DIGIT"),
    ):
        await refused(register(stub, number), grpc.StatusCode.INVALID_ARGUMENT, reason)
    await refused(
        register(stub, kind=I.ESTABLISHMENT_KIND_UNSPECIFIED),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ESTABLISHMENT_KIND_INVALID",
    )
    await refused(
        register(stub, certificate_sha256=[]), grpc.StatusCode.INVALID_ARGUMENT, "FIELD_REQUIRED"
    )
    await refused(
        get_member(stub, f"establishments/{created.finess}/staff/10000000009"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_NAME",
    )


async def test_only_the_platform_registers_or_reads_establishments(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateEstablishment(
            I.CreateEstablishmentRequest(
                request_id=rid(),
                establishment=I.Establishment(
                    finess=new_finess(),
                    display_name="x",
                    kind=I.ESTABLISHMENT_KIND_CLINIC,
                    certificate_sha256=["a" * 64],
                ),
            ),
            metadata=md(DOCTOR, "CreateEstablishment"),
        )
    assert caught.value.code() in (
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    )


def test_finess_rule() -> None:
    assert finess.valid("750803447")  # HEGP, the discharge-letter sample's establishment
    assert finess.valid("920008059")
    assert not finess.valid("120459876")  # the lab sample's number has no valid key
    assert not finess.valid("75080344")
    assert finess.check_digit("75080344") == "7"
