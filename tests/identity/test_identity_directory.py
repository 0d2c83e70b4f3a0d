"""The professional directory and certificate resolution."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dmp.identity.v1 import identity_pb2
from dmp_dev.testing import principals
from kit import rpps
from kit.errors import error_info
from tests.identity.helpers import Rows, md, rid

ADMIN = principals.internal("dmp-admin")
GATEWAY = principals.internal("gateway")
READER = principals.professional("10000000009")


def new_rpps() -> str:
    prefix = "10" + f"{random.randrange(10**8):08d}"
    return prefix + rpps.check_digit(prefix)


def self_signed_der(common_name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


async def create(stub, **kw) -> identity_pb2.Professional:  # type: ignore[no-untyped-def]
    fields = {
        "rpps": new_rpps(),
        "family_name": "Durand",
        "given_name": "Paul",
        "profession_code": "10",
        **kw,
    }
    return await stub.CreateProfessional(
        identity_pb2.CreateProfessionalRequest(
            request_id=rid(), professional=identity_pb2.Professional(**fields)
        ),
        metadata=md(ADMIN, "CreateProfessional"),
    )


async def test_create_get_and_resolve(stub) -> None:
    der = self_signed_der("Dr Paul Durand")
    sha = hashlib.sha256(der).hexdigest()
    created = await create(
        stub,
        specialty_code="SM26",
        roles=[identity_pb2.PROFESSIONAL_ROLE_REGULATEUR],
        certificate_sha256=[":".join(sha[i : i + 2] for i in range(0, 64, 2)).upper()],
    )
    assert created.name == f"professionals/{created.rpps}"
    assert list(created.certificate_sha256) == [sha]
    got = await stub.GetProfessional(
        identity_pb2.GetProfessionalRequest(name=created.name),
        metadata=md(READER, "GetProfessional"),
    )
    assert got == created
    by_der = await stub.ResolveCertificate(
        identity_pb2.ResolveCertificateRequest(certificate_der=der),
        metadata=md(GATEWAY, "ResolveCertificate"),
    )
    by_print = await stub.ResolveCertificate(
        identity_pb2.ResolveCertificateRequest(sha256_fingerprint=sha),
        metadata=md(GATEWAY, "ResolveCertificate"),
    )
    assert by_der == by_print
    assert by_der.kind == identity_pb2.CARD_KIND_PROFESSIONAL
    assert by_der.professional == created


async def test_unknown_certificate_and_professional(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.ResolveCertificate(
            identity_pb2.ResolveCertificateRequest(certificate_der=self_signed_der("x")),
            metadata=md(GATEWAY, "ResolveCertificate"),
        )
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(exc.value).reason == "CERTIFICATE_UNKNOWN"  # type: ignore[union-attr]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.GetProfessional(
            identity_pb2.GetProfessionalRequest(name=f"professionals/{new_rpps()}"),
            metadata=md(READER, "GetProfessional"),
        )
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(exc.value).reason == "PROFESSIONAL_NOT_FOUND"  # type: ignore[union-attr]


async def test_internal_methods_refuse_other_callers(stub, rows: Rows) -> None:
    before = await rows.counts()
    for principal in (READER, principals.staff("agent", ("guichet_amo",))):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.CreateProfessional(
                identity_pb2.CreateProfessionalRequest(
                    request_id=rid(),
                    professional=identity_pb2.Professional(
                        rpps=new_rpps(), family_name="X", given_name="Y", profession_code="10"
                    ),
                ),
                metadata=md(principal, "CreateProfessional"),
            )
        assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(exc.value).reason == "INTERNAL_METHOD"  # type: ignore[union-attr]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.ResolveCertificate(
            identity_pb2.ResolveCertificateRequest(sha256_fingerprint="a" * 64)
        )
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await rows.counts() == before


async def test_duplicates_and_idempotent_retry(stub, rows: Rows) -> None:
    request = identity_pb2.CreateProfessionalRequest(
        request_id=rid(),
        professional=identity_pb2.Professional(
            rpps=new_rpps(),
            family_name="Petit",
            given_name="Lea",
            profession_code="21",
            certificate_sha256=["b" * 64],
        ),
    )
    first = await stub.CreateProfessional(request, metadata=md(ADMIN, "CreateProfessional"))
    assert await stub.CreateProfessional(request, metadata=md(ADMIN, "CreateProfessional")) == first
    before = await rows.counts()
    for professional, reason in [
        (request.professional, "PROFESSIONAL_EXISTS"),
        (
            identity_pb2.Professional(
                rpps=new_rpps(),
                family_name="A",
                given_name="B",
                profession_code="10",
                certificate_sha256=["b" * 64],
            ),
            "CERTIFICATE_ALREADY_REGISTERED",
        ),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.CreateProfessional(
                identity_pb2.CreateProfessionalRequest(request_id=rid(), professional=professional),
                metadata=md(ADMIN, "CreateProfessional"),
            )
        assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_info(exc.value).reason == reason  # type: ignore[union-attr]
    assert await rows.counts() == before


async def test_list_pages_and_filter(stub) -> None:
    made = [await create(stub, profession_code="28") for _ in range(5)]
    expected = sorted(p.rpps for p in made)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await stub.ListProfessionals(
            identity_pb2.ListProfessionalsRequest(
                page_size=2, page_token=token, filter='profession_code = "28"'
            ),
            metadata=md(READER, "ListProfessionals"),
        )
        pages += 1
        assert len(page.professionals) <= 2
        assert all(p.profession_code == "28" for p in page.professionals)
        seen += [p.rpps for p in page.professionals]
        token = page.next_page_token
        if not token:
            break
    assert seen == expected
    assert pages == 3
    # A token is bound to its filter.
    first = await stub.ListProfessionals(
        identity_pb2.ListProfessionalsRequest(page_size=1, filter='profession_code = "28"'),
        metadata=md(READER, "ListProfessionals"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.ListProfessionals(
            identity_pb2.ListProfessionalsRequest(page_token=first.next_page_token),
            metadata=md(READER, "ListProfessionals"),
        )
    assert error_info(exc.value).reason == "INVALID_PAGE_TOKEN"  # type: ignore[union-attr]


def card(**kw) -> identity_pb2.Card:  # type: ignore[no-untyped-def]
    fields = {
        "kind": identity_pb2.CARD_KIND_STAFF,
        "display_name": "Agent CPAM 75",
        "organisation": "CPAM Paris",
        "roles": [identity_pb2.PROFESSIONAL_ROLE_GUICHET_AMO],
        "certificate_sha256": hashlib.sha256(self_signed_der("agent")).hexdigest(),
        **kw,
    }
    return identity_pb2.Card(**fields)


async def test_staff_and_service_cards_register_and_resolve(stub, rows: Rows) -> None:
    der = self_signed_der("AMO feeder")
    sha = hashlib.sha256(der).hexdigest()
    request = identity_pb2.RegisterCardRequest(
        request_id=rid(),
        card=card(
            kind=identity_pb2.CARD_KIND_SERVICE,
            display_name="AMO feeder",
            roles=[identity_pb2.PROFESSIONAL_ROLE_ALIMENTATION_AMO],
            certificate_sha256=sha.upper(),
        ),
    )
    created = await stub.RegisterCard(request, metadata=md(ADMIN, "RegisterCard"))
    assert created.name == f"cards/{sha}"
    assert created.certificate_sha256 == sha
    assert created.rpps == ""
    # A retry of the same request answers the same; the certificate cannot be registered twice.
    assert await stub.RegisterCard(request, metadata=md(ADMIN, "RegisterCard")) == created
    holder = await stub.ResolveCertificate(
        identity_pb2.ResolveCertificateRequest(certificate_der=der),
        metadata=md(GATEWAY, "ResolveCertificate"),
    )
    assert holder.kind == identity_pb2.CARD_KIND_SERVICE
    assert holder.WhichOneof("holder") == "card"
    assert holder.card == created
    before = await rows.counts()
    for again in (
        identity_pb2.RegisterCardRequest(request_id=rid(), card=card(certificate_sha256=sha)),
        identity_pb2.CreateProfessionalRequest(
            request_id=rid(),
            professional=identity_pb2.Professional(
                rpps=new_rpps(),
                family_name="A",
                given_name="B",
                profession_code="10",
                certificate_sha256=[sha],
            ),
        ),
    ):
        method = type(again).__name__.removesuffix("Request")
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await getattr(stub, method)(again, metadata=md(ADMIN, method))
        assert exc.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert error_info(exc.value).reason == "CERTIFICATE_ALREADY_REGISTERED"  # type: ignore[union-attr]
    assert await rows.counts() == before


async def test_staff_card_with_rpps_and_refused_cards(stub, rows: Rows) -> None:
    number = new_rpps()
    created = await stub.RegisterCard(
        identity_pb2.RegisterCardRequest(request_id=rid(), card=card(rpps=number)),
        metadata=md(ADMIN, "RegisterCard"),
    )
    assert created.rpps == number
    before = await rows.counts()
    for bad, reason in [
        (card(kind=identity_pb2.CARD_KIND_PROFESSIONAL), "CARD_KIND_INVALID"),
        (card(kind=identity_pb2.CARD_KIND_UNSPECIFIED), "CARD_KIND_INVALID"),
        (card(roles=[]), "ROLE_REQUIRED"),
        (card(roles=[99]), "ENUM_UNKNOWN"),
        (card(display_name=""), "FIELD_REQUIRED"),
        (card(organisation="x" * 101), "FIELD_TOO_LONG"),
        (card(rpps="10003554995"), "RPPS_CHECK_DIGIT"),
        (card(certificate_sha256="zz"), "FINGERPRINT_MALFORMED"),
        (card(certificate_sha256=""), "FIELD_REQUIRED"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.RegisterCard(
                identity_pb2.RegisterCardRequest(request_id=rid(), card=bad),
                metadata=md(ADMIN, "RegisterCard"),
            )
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(exc.value).reason == reason  # type: ignore[union-attr]
    # Internal only.
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.RegisterCard(
            identity_pb2.RegisterCardRequest(request_id=rid(), card=card()),
            metadata=md(principals.staff("agent", ("guichet_amo",)), "RegisterCard"),
        )
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await rows.counts() == before
