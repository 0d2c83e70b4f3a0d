"""gRPC layer of ConsentService: who calls, then the domain module of each RPC family.

- authorizing: Authorize (and the log entry of every decision);
- grants: GrantAccess;
- rules: RevokeAccess, BlockProfessional, UnblockProfessional,
  SetAttendingPhysician, SetEmergencyPreferences;
- rule_listing: ListAccessRules;
- emergency: StartEmergencyAccess;
- existence: CheckDossierExistence (the existence test by INS);
- log_reading: ListAccessHistory, VerifyAccessLog.

Handlers return protos and raise `ServiceError`; the kit interceptor does the
rest. The servicer is handed a `Runtime` and never imports the app.
"""

from __future__ import annotations

import grpc

from dmp.consent.v1 import consent_pb2, consent_pb2_grpc
from kit.context import require_principal
from services.consent import (
    authorizing,
    emergency,
    existence,
    grants,
    log_reading,
    rule_listing,
    rules,
)
from services.consent.runtime import Runtime


class ConsentServicer(consent_pb2_grpc.ConsentServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def Authorize(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.AuthorizeResponse:
        authorizing.check_request(self.rt, request)
        return await authorizing.authorize(self.rt, request)

    async def GrantAccess(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.GrantAccessRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.AccessRule:
        return await grants.grant(self.rt, require_principal(), request)

    async def RevokeAccess(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.RevokeAccessRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.AccessRule:
        return await rules.revoke(self.rt, require_principal(), request)

    async def BlockProfessional(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.BlockProfessionalRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.AccessRule:
        return await rules.block(self.rt, require_principal(), request)

    async def UnblockProfessional(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.UnblockProfessionalRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.AccessRule:
        return await rules.unblock(self.rt, require_principal(), request)

    async def SetAttendingPhysician(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.SetAttendingPhysicianRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.AccessRule:
        return await rules.set_attending(self.rt, require_principal(), request)

    async def SetEmergencyPreferences(  # noqa: N802 - gRPC method name
        self,
        request: consent_pb2.SetEmergencyPreferencesRequest,
        context: grpc.aio.ServicerContext,
    ) -> consent_pb2.AccessRule:
        return await rules.set_emergency_preferences(self.rt, require_principal(), request)

    async def ListAccessRules(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.ListAccessRulesRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.ListAccessRulesResponse:
        return await rule_listing.list_rules(self.rt, require_principal(), request)

    async def StartEmergencyAccess(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.StartEmergencyAccessRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.AccessRule:
        return await emergency.start(self.rt, require_principal(), request)

    async def ListAccessHistory(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.ListAccessHistoryRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.ListAccessHistoryResponse:
        return await log_reading.list_history(self.rt, require_principal(), request)

    async def VerifyAccessLog(  # noqa: N802 - gRPC method name
        self, request: consent_pb2.VerifyAccessLogRequest, context: grpc.aio.ServicerContext
    ) -> consent_pb2.VerifyAccessLogResponse:
        return await log_reading.verify(self.rt, require_principal(), request)

    async def CheckDossierExistence(  # noqa: N802 - gRPC method name
        self,
        request: consent_pb2.CheckDossierExistenceRequest,
        context: grpc.aio.ServicerContext,
    ) -> consent_pb2.DossierExistence:
        return await existence.check(self.rt, require_principal(), request)
