"""gRPC layer: validates every field, then calls the domain modules.

Nothing is written before the whole request is validated. Handlers return
protos and raise `ServiceError`; the kit interceptor does the rest.
"""

from __future__ import annotations

import grpc

from dmp.authz.v1 import principal_pb2
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from kit import ins, pagination
from kit.context import current_principal
from kit.db import transaction
from kit.errors import invalid_argument
from kit.principal import require_kind
from services.identity import (
    accounts,
    creation_codes,
    directory,
    establishments,
    login,
    otp,
    passwords,
    support,
)
from services.identity import validation as check
from services.identity.runtime import Runtime

MAX_PASSWORD = passwords.MAX_LENGTH
MAX_REFRESH_TOKEN = 128


def _code(value: str, field: str) -> str:
    check.required(value, field, 16)
    if not otp.well_formed(value):
        raise invalid_argument("OTP_MALFORMED", "A one-time code is 6 digits.", field)
    return value


def _identifier(value: str, field: str) -> str:
    return ins.validate(check.required(value, field, 32), field)


def _patient() -> principal_pb2.Principal:
    return require_kind(current_principal(), principal_pb2.PRINCIPAL_KIND_PATIENT)


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._page_tokens = pagination.PageTokens.for_service(runtime.settings, "identity")

    async def StartLogin(  # noqa: N802 - gRPC method name
        self, request: identity_pb2.StartLoginRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.StartLoginResponse:
        key = self.rt.requests.key(request)
        identifier = _identifier(request.identifier, "identifier")
        password = check.required(request.password, "password", MAX_PASSWORD)
        return await login.start_login(self.rt, key, identifier, password)

    async def VerifyOneTimeCode(  # noqa: N802 - gRPC method name
        self, request: identity_pb2.VerifyOneTimeCodeRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.VerifyOneTimeCodeResponse:
        key = self.rt.requests.key(request)
        challenge = check.resource_id(request.challenge, "challenges", "challenge")
        code = _code(request.code, "code")
        return await login.verify_code(self.rt, key, challenge, code)

    async def RefreshToken(  # noqa: N802 - gRPC method name
        self, request: identity_pb2.RefreshTokenRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.RefreshTokenResponse:
        key = self.rt.requests.key(request)
        token = check.required(request.refresh_token, "refresh_token", MAX_REFRESH_TOKEN)
        return await login.refresh(self.rt, key, token)

    async def Logout(  # noqa: N802 - gRPC method name
        self, request: identity_pb2.LogoutRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.LogoutResponse:
        key = self.rt.requests.key(request)
        return await login.logout(self.rt, key, _patient())

    async def ChangePassword(  # noqa: N802 - gRPC method name
        self, request: identity_pb2.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.ChangePasswordResponse:
        key = self.rt.requests.key(request)
        current = check.required(request.current_password, "current_password", MAX_PASSWORD)
        new = check.required(request.new_password, "new_password", MAX_PASSWORD)
        principal = _patient()
        return await accounts.change_password(self.rt, key, principal, current, new)

    async def IssueCreationCode(  # noqa: N802 - gRPC method name
        self, request: identity_pb2.IssueCreationCodeRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IssueCreationCodeResponse:
        caller = accounts.may_issue_creation_code(current_principal())
        key = self.rt.requests.key(request)
        patient_ins = _identifier(request.ins, "ins")
        return await accounts.issue_creation_code(self.rt, key, patient_ins, caller)

    async def IssueActivationLetter(  # noqa: N802 - gRPC method name
        self,
        request: identity_pb2.IssueActivationLetterRequest,
        context: grpc.aio.ServicerContext,
    ) -> identity_pb2.ActivationLetter:
        caller = accounts.may_issue_creation_code(current_principal())
        key = self.rt.requests.key(request)
        patient_ins = _identifier(request.ins, "ins")
        return await accounts.issue_activation_letter(self.rt, key, patient_ins, caller)

    async def ReissueActivation(  # noqa: N802 - gRPC method name
        self, request: identity_pb2.ReissueActivationRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.ReissueActivationResponse:
        caller = support.may_reissue(current_principal())
        key = self.rt.requests.key(request)
        patient_ins = _identifier(request.ins, "ins")
        if not request.HasField("identity_check"):
            raise invalid_argument(
                "IDENTITY_CHECK_REQUIRED",
                "The identity check made during the call is required.",
                "identity_check",
            )
        checked = support.checked_items(request.identity_check)
        reference = support.call_reference(request.identity_check.call_reference)
        delivery = support.delivery_of(request)
        return await support.reissue(
            self.rt,
            key,
            caller,
            patient_ins,
            checked=checked,
            reference=reference,
            delivery=delivery,
        )

    async def RegisterPatientAccount(  # noqa: N802 - gRPC method name
        self,
        request: identity_pb2.RegisterPatientAccountRequest,
        context: grpc.aio.ServicerContext,
    ) -> identity_pb2.Account:
        key = self.rt.requests.key(request)
        patient_ins = _identifier(request.ins, "ins")
        code = creation_codes.normalize(check.required(request.creation_code, "creation_code", 32))
        password = check.required(request.password, "password", MAX_PASSWORD)
        email = check.email(request.email)
        mobile_phone = check.mobile_phone(request.mobile_phone)
        if not email and not mobile_phone:
            raise invalid_argument(
                "CONTACT_REQUIRED", "An e-mail or a mobile phone is needed for codes.", "email"
            )
        passwords.check_policy(password, patient_ins)
        return await accounts.register(
            self.rt,
            key,
            ins=patient_ins,
            code=code,
            password=password,
            email=email,
            mobile_phone=mobile_phone,
        )

    async def RecoverCredentials(  # noqa: N802 - gRPC method name
        self, request: identity_pb2.RecoverCredentialsRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.RecoverCredentialsResponse:
        key = self.rt.requests.key(request)
        step = request.WhichOneof("step")
        if step == "start":
            identifier = _identifier(request.start.identifier, "start.identifier")
            return await accounts.start_recovery(self.rt, key, identifier)
        if step == "complete":
            step_in = request.complete
            challenge = check.resource_id(step_in.challenge, "challenges", "complete.challenge")
            code = _code(step_in.code, "complete.code")
            new = check.required(step_in.new_password, "complete.new_password", MAX_PASSWORD)
            return await accounts.complete_recovery(self.rt, key, challenge, code, new)
        raise invalid_argument("FIELD_REQUIRED", "start or complete is required.", "step")

    async def GetProfessional(  # noqa: N802 - gRPC method name
        self, request: identity_pb2.GetProfessionalRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.Professional:
        number = directory.rpps_from_name(request.name)
        async with transaction(self.rt.db) as db:
            return await directory.get(db, number)

    async def ListProfessionals(  # noqa: N802 - gRPC method name
        self, request: identity_pb2.ListProfessionalsRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.ListProfessionalsResponse:
        return await directory.list_professionals(self.rt, request, self._page_tokens)

    async def ResolveCertificate(  # noqa: N802 - gRPC method name
        self, request: identity_pb2.ResolveCertificateRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.CertificateHolder:
        which = request.WhichOneof("certificate")
        if which == "certificate_der":
            sha = directory.certificate_fingerprint(request.certificate_der)
        elif which == "sha256_fingerprint" and request.sha256_fingerprint:
            sha = directory.fingerprint(request.sha256_fingerprint, "sha256_fingerprint")
        else:
            raise invalid_argument(
                "FIELD_REQUIRED", "A certificate or its fingerprint is required.", "certificate"
            )
        async with transaction(self.rt.db) as db:
            establishment = await establishments.holder(db, sha)
            if establishment is not None:
                return identity_pb2.CertificateHolder(
                    kind=identity_pb2.CARD_KIND_ESTABLISHMENT, establishment=establishment
                )
            return await directory.resolve(db, sha)

    async def CreateProfessional(  # noqa: N802 - gRPC method name
        self, request: identity_pb2.CreateProfessionalRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.Professional:
        key = self.rt.requests.key(request)
        if not request.HasField("professional"):
            raise invalid_argument("FIELD_REQUIRED", "professional is required.", "professional")
        entry = directory.validated(request.professional)
        caller = require_kind(current_principal(), principal_pb2.PRINCIPAL_KIND_INTERNAL).subject
        return await directory.create_professional(self.rt, key, entry, caller)

    async def RegisterCard(  # noqa: N802 - gRPC method name
        self, request: identity_pb2.RegisterCardRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.Card:
        key = self.rt.requests.key(request)
        if not request.HasField("card"):
            raise invalid_argument("FIELD_REQUIRED", "card is required.", "card")
        entry = directory.validated_card(request.card)
        caller = require_kind(current_principal(), principal_pb2.PRINCIPAL_KIND_INTERNAL).subject
        return await directory.add_card(self.rt, key, entry, caller)

    async def CreateEstablishment(  # noqa: N802 - gRPC method name
        self, request: identity_pb2.CreateEstablishmentRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.Establishment:
        key = self.rt.requests.key(request)
        if not request.HasField("establishment"):
            raise invalid_argument("FIELD_REQUIRED", "establishment is required.", "establishment")
        entry = establishments.validated(request.establishment)
        caller = require_kind(current_principal(), principal_pb2.PRINCIPAL_KIND_INTERNAL).subject
        return await establishments.create_establishment(self.rt, key, entry, caller)

    async def AddEstablishmentMember(  # noqa: N802 - gRPC method name
        self,
        request: identity_pb2.AddEstablishmentMemberRequest,
        context: grpc.aio.ServicerContext,
    ) -> identity_pb2.EstablishmentMember:
        key = self.rt.requests.key(request)
        number = establishments.finess_from_name(request.parent, "parent")
        rpps_number = directory.rpps_from_name(request.professional, "professional")
        caller = require_kind(current_principal(), principal_pb2.PRINCIPAL_KIND_INTERNAL).subject
        return await establishments.add_establishment_member(
            self.rt, key, number, rpps_number, caller
        )

    async def GetEstablishmentMember(  # noqa: N802 - gRPC method name
        self,
        request: identity_pb2.GetEstablishmentMemberRequest,
        context: grpc.aio.ServicerContext,
    ) -> identity_pb2.EstablishmentMember:
        number, rpps_number = establishments.member_from_name(request.name)
        async with transaction(self.rt.db) as db:
            return await establishments.get_member(db, number, rpps_number)
