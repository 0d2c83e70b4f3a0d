"""Creation codes, sign-up, password change and credential recovery."""

from __future__ import annotations

from datetime import UTC, timedelta

import grpc
import pytest
from sqlalchemy import select

from dmp.identity.v1 import identity_pb2
from dmp_dev.testing import principals
from kit.clock import ManualClock
from kit.errors import error_info
from services.identity import models
from tests.fixtures.notify import NotifySinks
from tests.identity.helpers import (
    PASSWORD,
    Rows,
    desk,
    login,
    md,
    new_phone,
    patient_principal,
    random_ins,
    register_patient,
    rid,
    wait_code,
)


def failure(exc: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> tuple[grpc.StatusCode, str]:
    info = error_info(exc.value)
    assert info is not None
    return exc.value.code(), info.reason


async def issue(stub, ins: str, principal=None) -> identity_pb2.IssueCreationCodeResponse:  # type: ignore[no-untyped-def]
    return await stub.IssueCreationCode(
        identity_pb2.IssueCreationCodeRequest(request_id=rid(), ins=ins),
        metadata=md(principal or desk(), "IssueCreationCode"),
    )


def register_request(ins: str, code: str, **kw: str) -> identity_pb2.RegisterPatientAccountRequest:
    fields = {"password": PASSWORD, "mobile_phone": new_phone(), **kw}
    return identity_pb2.RegisterPatientAccountRequest(
        request_id=rid(), ins=ins, creation_code=code, **fields
    )


async def test_creation_code_format_and_storage(stub, rows: Rows) -> None:
    ins = random_ins()
    issued = await issue(stub, ins)
    code = issued.creation_code
    assert len(code) == 14
    assert code[4] == code[9] == "-"
    stored = await rows.scalar(
        select(models.creation_codes.c.code_mac).where(models.creation_codes.c.ins == ins)
    )
    assert isinstance(stored, bytes)
    assert len(stored) == 32


@pytest.mark.parametrize(
    ("principal", "status", "reason"),
    [
        (principals.professional("10000000009"), None, None),
        (principals.staff("agent", ("guichet_amo",)), None, None),
        (principals.staff("clerk", ("administratif",)), "PERMISSION_DENIED", "ROLE_REQUIRED"),
        (
            principals.professional("10101406451", roles=("medecin_du_travail",)),
            "PERMISSION_DENIED",
            "ROLE_EXCLUDED",
        ),
        (
            principals.staff("mc", ("guichet_amo", "medecin_conseil")),
            "PERMISSION_DENIED",
            "ROLE_EXCLUDED",
        ),
        (principals.patient("255081416802538"), "PERMISSION_DENIED", "PRINCIPAL_KIND_NOT_ALLOWED"),
    ],
)
async def test_who_may_issue_creation_codes(stub, rows: Rows, principal, status, reason) -> None:  # type: ignore[no-untyped-def]
    before = await rows.counts()
    if status is None:
        await issue(stub, random_ins(), principal)
        return
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await issue(stub, random_ins(), principal)
    assert failure(exc) == (getattr(grpc.StatusCode, status), reason)
    assert await rows.counts() == before


async def test_anonymous_cannot_issue(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.IssueCreationCode(
            identity_pb2.IssueCreationCodeRequest(request_id=rid(), ins=random_ins())
        )
    assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


async def test_register_then_one_account_per_ins(stub, rows: Rows) -> None:
    ins = random_ins()
    issued = await issue(stub, ins)
    request = register_request(ins, issued.creation_code.lower())  # case is ignored
    account = await stub.RegisterPatientAccount(request)
    assert account.ins == ins
    assert account.name.startswith("accounts/")
    assert account.code_channel == identity_pb2.DELIVERY_CHANNEL_SMS
    assert request.mobile_phone not in account.masked_mobile_phone
    # A retry of the same request returns the same account.
    assert await stub.RegisterPatientAccount(request) == account
    stored = await rows.scalar(
        select(models.accounts.c.password_hash).where(models.accounts.c.ins == ins)
    )
    assert isinstance(stored, str)
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    before = await rows.counts()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.RegisterPatientAccount(register_request(ins, issued.creation_code))
    assert failure(exc) == (grpc.StatusCode.FAILED_PRECONDITION, "CREATION_CODE_ALREADY_USED")
    assert await rows.counts() == before
    # Issuing for a patient who has an account answers as for anyone (no oracle); that code
    # can never register a second account.
    late = await issue(stub, ins)
    assert len(late.creation_code) == 14
    before = await rows.counts()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.RegisterPatientAccount(register_request(ins, late.creation_code))
    assert failure(exc) == (grpc.StatusCode.ALREADY_EXISTS, "ACCOUNT_EXISTS")
    assert await rows.counts() == before


async def test_wrong_and_expired_codes_and_no_code_is_superseded(
    stub, rows: Rows, clock: ManualClock
) -> None:
    ins = random_ins()
    first = await issue(stub, ins)
    second = await issue(stub, ins)
    before = await rows.counts()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.RegisterPatientAccount(register_request(ins, "ABCD-EFGH-JKMN"))
    assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "CREATION_CODE_INVALID")
    # The code of another INS is wrong for this one.
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.RegisterPatientAccount(register_request(random_ins(), second.creation_code))
    assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "CREATION_CODE_INVALID")
    clock.advance(timedelta(hours=72, seconds=1))
    for issued in (first, second):  # a later code did not cancel the first; time did
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.RegisterPatientAccount(register_request(ins, issued.creation_code))
        assert failure(exc) == (grpc.StatusCode.FAILED_PRECONDITION, "CREATION_CODE_EXPIRED")
    assert await rows.counts() == before


async def test_a_professional_cannot_take_the_desk_code_away(stub, clock: ManualClock) -> None:
    """The known gap: a professional's IssueCreationCode revealed ACCOUNT_EXISTS and replaced
    the code the patient was handed. Now it reveals nothing and replaces nothing."""
    ins = random_ins()
    handed = await issue(stub, ins)
    doctor = principals.professional("10000000017", "10", "SM53")
    await issue(stub, ins, doctor)
    account = await stub.RegisterPatientAccount(register_request(ins, handed.creation_code))
    assert account.ins == ins
    # Once the account exists the professional's answer is the same as before it did.
    again = await issue(stub, ins, doctor)
    assert len(again.creation_code) == 14
    assert again.expire_time.ToDatetime(UTC) - clock.now() == timedelta(hours=72)


async def test_change_password(stub, notify_sinks: NotifySinks) -> None:
    patient = await register_patient(stub)
    current = await login(stub, notify_sinks, patient)
    other = await login(stub, notify_sinks, patient)
    principal = patient_principal(patient, current)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.ChangePassword(
            identity_pb2.ChangePasswordRequest(
                request_id=rid(), current_password="Wrong-Password-1", new_password="New-Pass-2024!"
            ),
            metadata=md(principal, "ChangePassword"),
        )
    assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.ChangePassword(
            identity_pb2.ChangePasswordRequest(
                request_id=rid(), current_password=PASSWORD, new_password="weakpassword"
            ),
            metadata=md(principal, "ChangePassword"),
        )
    assert failure(exc) == (grpc.StatusCode.INVALID_ARGUMENT, "PASSWORD_POLICY")
    response = await stub.ChangePassword(
        identity_pb2.ChangePasswordRequest(
            request_id=rid(), current_password=PASSWORD, new_password="New-Pass-2024!"
        ),
        metadata=md(principal, "ChangePassword"),
    )
    assert response.revoked_sessions == 1
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.RefreshToken(
            identity_pb2.RefreshTokenRequest(request_id=rid(), refresh_token=other.refresh_token)
        )
    assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_REVOKED")
    patient.password = "New-Pass-2024!"
    await login(stub, notify_sinks, patient)


async def test_recovery(stub, notify_sinks: NotifySinks) -> None:
    patient = await register_patient(stub)
    session = await login(stub, notify_sinks, patient)
    before = notify_sinks.count_for(patient.phone)
    started = await stub.RecoverCredentials(
        identity_pb2.RecoverCredentialsRequest(
            request_id=rid(), start=identity_pb2.StartRecovery(identifier=patient.ins)
        )
    )
    code = await wait_code(notify_sinks, patient.phone, before)
    # A login challenge's code cannot complete a recovery, nor the reverse.
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.VerifyOneTimeCode(
            identity_pb2.VerifyOneTimeCodeRequest(
                request_id=rid(), challenge=started.challenge, code=code
            )
        )
    assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "OTP_INVALID")
    done = await stub.RecoverCredentials(
        identity_pb2.RecoverCredentialsRequest(
            request_id=rid(),
            complete=identity_pb2.CompleteRecovery(
                challenge=started.challenge, code=code, new_password="Recovered-Pass-77"
            ),
        )
    )
    assert done.account == patient.account
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.RefreshToken(
            identity_pb2.RefreshTokenRequest(request_id=rid(), refresh_token=session.refresh_token)
        )
    assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_REVOKED")
    patient.password = "Recovered-Pass-77"
    await login(stub, notify_sinks, patient)


async def test_recovery_of_unknown_identifier_looks_the_same(stub, rows: Rows) -> None:
    started = await stub.RecoverCredentials(
        identity_pb2.RecoverCredentialsRequest(
            request_id=rid(), start=identity_pb2.StartRecovery(identifier=random_ins())
        )
    )
    assert started.challenge.startswith("challenges/")
    assert started.HasField("expire_time")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.RecoverCredentials(
            identity_pb2.RecoverCredentialsRequest(
                request_id=rid(),
                complete=identity_pb2.CompleteRecovery(
                    challenge=started.challenge, code="123456", new_password="Recovered-Pass-77"
                ),
            )
        )
    assert failure(exc) == (grpc.StatusCode.UNAUTHENTICATED, "OTP_INVALID")
