"""Every bad input: exact status, exact reason, and nothing written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from dmp.identity.v1 import identity_pb2
from dmp_dev.testing import principals
from kit.errors import error_info
from tests.identity.helpers import PASSWORD, Rows, desk, md, random_ins, rid

INS = "255081416802538"
BAD_KEY = "255081416802539"
CHALLENGE = "challenges/" + "a" * 32
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def login(**kw: Any) -> identity_pb2.StartLoginRequest:
    fields = {"request_id": rid(), "identifier": INS, "password": PASSWORD, **kw}
    return identity_pb2.StartLoginRequest(**fields)


def verify(**kw: Any) -> identity_pb2.VerifyOneTimeCodeRequest:
    fields = {"request_id": rid(), "challenge": CHALLENGE, "code": "123456", **kw}
    return identity_pb2.VerifyOneTimeCodeRequest(**fields)


def register(**kw: Any) -> identity_pb2.RegisterPatientAccountRequest:
    fields = {
        "request_id": rid(),
        "ins": INS,
        "creation_code": "ABCD-EFGH-JKMN",
        "password": PASSWORD,
        "email": "a@exemple.fr",
        **kw,
    }
    return identity_pb2.RegisterPatientAccountRequest(**fields)


def professional(**kw: Any) -> identity_pb2.CreateProfessionalRequest:
    fields = {
        "rpps": "10003554994",
        "family_name": "Martin",
        "given_name": "Claire",
        "profession_code": "10",
        "roles": [identity_pb2.PROFESSIONAL_ROLE_REGULATEUR],
        **kw,
    }
    return identity_pb2.CreateProfessionalRequest(
        request_id=rid(), professional=identity_pb2.Professional(**fields)
    )


Case = tuple[str, Callable[[], Any], str]

CASES: list[Case] = [
    ("StartLogin", lambda: login(request_id=""), "REQUEST_ID_REQUIRED"),
    ("StartLogin", lambda: login(request_id="not-a-uuid"), "REQUEST_ID_INVALID"),
    ("StartLogin", lambda: login(identifier=""), "FIELD_REQUIRED"),
    ("StartLogin", lambda: login(identifier="1" * 40), "FIELD_TOO_LONG"),
    ("StartLogin", lambda: login(identifier="12345"), "INS_MALFORMED"),
    ("StartLogin", lambda: login(identifier=BAD_KEY), "INS_KEY_MISMATCH"),
    ("StartLogin", lambda: login(password=""), "FIELD_REQUIRED"),
    ("StartLogin", lambda: login(password="x" * 129), "FIELD_TOO_LONG"),
    ("VerifyOneTimeCode", lambda: verify(challenge=""), "FIELD_REQUIRED"),
    ("VerifyOneTimeCode", lambda: verify(challenge="challenges/xyz"), "INVALID_NAME"),
    (
        "VerifyOneTimeCode",
        lambda: verify(challenge="accounts/" + "a" * 32),
        "INVALID_NAME",
    ),
    ("VerifyOneTimeCode", lambda: verify(code="12345"), "OTP_MALFORMED"),
    ("VerifyOneTimeCode", lambda: verify(code="12345a"), "OTP_MALFORMED"),
    ("VerifyOneTimeCode", lambda: verify(code="1" * 17), "FIELD_TOO_LONG"),
    (
        "RefreshToken",
        lambda: identity_pb2.RefreshTokenRequest(request_id=rid(), refresh_token=""),
        "FIELD_REQUIRED",
    ),
    (
        "RefreshToken",
        lambda: identity_pb2.RefreshTokenRequest(request_id=rid(), refresh_token="x" * 129),
        "FIELD_TOO_LONG",
    ),
    ("RegisterPatientAccount", lambda: register(ins=BAD_KEY), "INS_KEY_MISMATCH"),
    ("RegisterPatientAccount", lambda: register(creation_code=""), "FIELD_REQUIRED"),
    ("RegisterPatientAccount", lambda: register(creation_code="ABC"), "CREATION_CODE_MALFORMED"),
    ("RegisterPatientAccount", lambda: register(creation_code="A" * 33), "FIELD_TOO_LONG"),
    ("RegisterPatientAccount", lambda: register(password="short"), "PASSWORD_POLICY"),
    ("RegisterPatientAccount", lambda: register(password=f"Aa1-{INS}"), "PASSWORD_POLICY"),
    ("RegisterPatientAccount", lambda: register(password="x" * 129), "FIELD_TOO_LONG"),
    ("RegisterPatientAccount", lambda: register(email="not-an-email"), "EMAIL_INVALID"),
    ("RegisterPatientAccount", lambda: register(email="a" * 250 + "@x.fr"), "FIELD_TOO_LONG"),
    ("RegisterPatientAccount", lambda: register(mobile_phone="0612345678"), "PHONE_INVALID"),
    ("RegisterPatientAccount", lambda: register(email="", mobile_phone=""), "CONTACT_REQUIRED"),
    (
        "RecoverCredentials",
        lambda: identity_pb2.RecoverCredentialsRequest(request_id=rid()),
        "FIELD_REQUIRED",
    ),
    (
        "RecoverCredentials",
        lambda: identity_pb2.RecoverCredentialsRequest(
            request_id=rid(), start=identity_pb2.StartRecovery(identifier=BAD_KEY)
        ),
        "INS_KEY_MISMATCH",
    ),
    (
        "RecoverCredentials",
        lambda: identity_pb2.RecoverCredentialsRequest(
            request_id=rid(),
            complete=identity_pb2.CompleteRecovery(
                challenge=CHALLENGE, code="123456", new_password="weak"
            ),
        ),
        "PASSWORD_POLICY",
    ),
    (
        "ListProfessionals",
        lambda: identity_pb2.ListProfessionalsRequest(page_size=-1),
        "INVALID_PAGE_SIZE",
    ),
    (
        "ListProfessionals",
        lambda: identity_pb2.ListProfessionalsRequest(page_token="garbage!"),
        "INVALID_PAGE_TOKEN",
    ),
    (
        "ListProfessionals",
        lambda: identity_pb2.ListProfessionalsRequest(filter='profession_code = "999"'),
        "PROFESSION_UNKNOWN",
    ),
    (
        "ListProfessionals",
        lambda: identity_pb2.ListProfessionalsRequest(filter="profession = 10"),
        "INVALID_FILTER",
    ),
    (
        "GetProfessional",
        lambda: identity_pb2.GetProfessionalRequest(name="professionals/10003554995"),
        "RPPS_CHECK_DIGIT",
    ),
    (
        "GetProfessional",
        lambda: identity_pb2.GetProfessionalRequest(name="doctors/10003554994"),
        "INVALID_NAME",
    ),
    ("CreateProfessional", lambda: professional(rpps="10003554995"), "RPPS_CHECK_DIGIT"),
    ("CreateProfessional", lambda: professional(rpps="1000355499"), "INVALID_RPPS"),
    ("CreateProfessional", lambda: professional(family_name=""), "FIELD_REQUIRED"),
    ("CreateProfessional", lambda: professional(given_name="x" * 101), "FIELD_TOO_LONG"),
    ("CreateProfessional", lambda: professional(profession_code="999"), "PROFESSION_UNKNOWN"),
    ("CreateProfessional", lambda: professional(specialty_code="NOPE"), "SPECIALTY_UNKNOWN"),
    ("CreateProfessional", lambda: professional(roles=[0]), "ENUM_UNSPECIFIED"),
    ("CreateProfessional", lambda: professional(roles=[99]), "ENUM_UNKNOWN"),
    (
        "CreateProfessional",
        lambda: professional(certificate_sha256=["zz" * 32]),
        "FINGERPRINT_MALFORMED",
    ),
    (
        "CreateProfessional",
        lambda: identity_pb2.CreateProfessionalRequest(request_id=rid()),
        "FIELD_REQUIRED",
    ),
    (
        "ResolveCertificate",
        identity_pb2.ResolveCertificateRequest,
        "FIELD_REQUIRED",
    ),
    (
        "ResolveCertificate",
        lambda: identity_pb2.ResolveCertificateRequest(certificate_der=b"\x30\x03junk"),
        "CERTIFICATE_MALFORMED",
    ),
    (
        "ResolveCertificate",
        lambda: identity_pb2.ResolveCertificateRequest(certificate_der=b"x" * 20000),
        "FIELD_TOO_LONG",
    ),
    (
        "ResolveCertificate",
        lambda: identity_pb2.ResolveCertificateRequest(sha256_fingerprint="abc"),
        "FINGERPRINT_MALFORMED",
    ),
    (
        "IssueCreationCode",
        lambda: identity_pb2.IssueCreationCodeRequest(request_id=rid(), ins=BAD_KEY),
        "INS_KEY_MISMATCH",
    ),
    (
        "IssueCreationCode",
        lambda: identity_pb2.IssueCreationCodeRequest(request_id="", ins=random_ins()),
        "REQUEST_ID_REQUIRED",
    ),
]

PRINCIPALS = {
    "ListProfessionals": principals.professional("10000000009"),
    "GetProfessional": principals.professional("10000000009"),
    "CreateProfessional": principals.internal("dmp-admin"),
    "ResolveCertificate": principals.internal("gateway"),
    "IssueCreationCode": desk(),
}


@pytest.mark.parametrize(
    ("method", "build", "reason"), CASES, ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(CASES)]
)
async def test_bad_input(
    stub, rows: Rows, method: str, build: Callable[[], Any], reason: str
) -> None:
    before = await rows.counts()
    principal = PRINCIPALS.get(method)
    metadata = md(principal, method) if principal is not None else None
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await getattr(stub, method)(build(), metadata=metadata)
    info = error_info(exc.value)
    assert info is not None
    assert (exc.value.code(), info.reason) == (INVALID, reason)
    assert await rows.counts() == before


async def test_patient_rpcs_validate_before_writing(stub, rows: Rows) -> None:
    patient = principals.patient(INS, session_id="a" * 32)
    before = await rows.counts()
    for request, reason in [
        (
            identity_pb2.ChangePasswordRequest(request_id=rid(), new_password=PASSWORD),
            "FIELD_REQUIRED",
        ),
        (
            identity_pb2.ChangePasswordRequest(
                request_id=rid(), current_password=PASSWORD, new_password="y" * 129
            ),
            "FIELD_TOO_LONG",
        ),
        (identity_pb2.ChangePasswordRequest(request_id="x"), "REQUEST_ID_INVALID"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.ChangePassword(request, metadata=md(patient, "ChangePassword"))
        info = error_info(exc.value)
        assert info is not None
        assert (exc.value.code(), info.reason) == (INVALID, reason)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Logout(identity_pb2.LogoutRequest(), metadata=md(patient, "Logout"))
    assert error_info(exc.value).reason == "REQUEST_ID_REQUIRED"  # type: ignore[union-attr]
    assert await rows.counts() == before
