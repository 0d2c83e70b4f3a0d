"""gRPC servicer of dmp.records.v1.RecordsService: parse the names, open the record, delegate.

One transaction per RPC (`transactions`); mutations are idempotent per
(principal, method, request_id). Each handler only parses the resource names
(INVALID_NAME before any read) and picks the record gates it lifts (closed,
terms of use); the rules live in the domain modules.
"""

from __future__ import annotations

from datetime import datetime

import grpc
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.authz.v1 import principal_pb2
from dmp.records.v1 import records_pb2, records_pb2_grpc
from kit import ins as kit_ins
from kit import pagination
from kit.errors import failed_precondition
from services.records import (
    attributes,
    creations,
    directives,
    documents,
    lifecycle,
    listing,
    names,
    profile,
    vaccinations,
)
from services.records.access import RecordContext, open_record
from services.records.settings import RecordsSettings
from services.records.transactions import Transactions

R = records_pb2
Principal = principal_pb2.Principal


class RecordsServicer(records_pb2_grpc.RecordsServiceServicer):
    def __init__(
        self,
        transactions: Transactions,
        settings: RecordsSettings,
        page_tokens: pagination.PageTokens,
    ) -> None:
        self.tx = transactions
        self.settings = settings
        self.page_tokens = page_tokens

    async def _open(
        self,
        session: AsyncSession,
        principal: Principal,
        dossier: str | names.RecordRef,
        now: datetime,
        *,
        for_update: bool = False,
        allow_closed: bool = False,
        allow_terms: bool = False,
    ) -> RecordContext:
        """The record by id, or by its patient's INS (`names.RecordRef`)."""
        ref = dossier if isinstance(dossier, names.RecordRef) else names.RecordRef(dossier)
        return await open_record(
            session,
            principal,
            dossier_id=ref.dossier_id,
            patient_ins=ref.patient_ins,
            now=now,
            for_update=for_update,
            allow_closed=allow_closed,
            allow_terms=allow_terms,
            terms_version=self.settings.terms_version,
        )

    # -- record lifecycle -------------------------------------------------

    async def CreateDossier(  # noqa: N802 - gRPC method name
        self, request: R.CreateDossierRequest, context: grpc.aio.ServicerContext
    ) -> R.Dossier:
        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> tuple[R.Dossier, int]:
            return await lifecycle.create(session, request, principal, self.settings, now)

        return await self.tx.mutate("CreateDossier", request, R.Dossier, body)

    async def GetDossier(  # noqa: N802 - gRPC method name
        self, request: R.GetDossierRequest, context: grpc.aio.ServicerContext
    ) -> R.Dossier:
        kind, value = names.parse_dossier_or_alias(request.name)

        async def body(session: AsyncSession, principal: Principal, now: datetime) -> R.Dossier:
            record = await open_record(
                session,
                principal,
                dossier_id=value if kind == "id" else None,
                patient_ins=kit_ins.validate(value, "name") if kind == "ins" else None,
                now=now,
                allow_closed=True,
                terms_version=self.settings.terms_version,
            )
            if record.row.state == R.DOSSIER_STATE_CLOSED and not record.caller.acts_for_patient:
                raise failed_precondition("DOSSIER_CLOSED", "The record is closed.")
            return lifecycle.to_proto(record.row, record.reps, self.settings, now)

        return await self.tx.read(body)

    async def CloseDossier(  # noqa: N802 - gRPC method name
        self, request: R.CloseDossierRequest, context: grpc.aio.ServicerContext
    ) -> R.Dossier:
        dossier_id = names.parse_dossier(request.name)

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> tuple[R.Dossier, int]:
            record = await self._open(session, principal, dossier_id, now, for_update=True)
            return await lifecycle.close(session, record, request, self.settings, now), record.pk

        return await self.tx.mutate("CloseDossier", request, R.Dossier, body)

    async def ReactivateDossier(  # noqa: N802 - gRPC method name
        self, request: R.ReactivateDossierRequest, context: grpc.aio.ServicerContext
    ) -> R.Dossier:
        dossier_id = names.parse_dossier(request.name)

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> tuple[R.Dossier, int]:
            record = await self._open(
                session, principal, dossier_id, now, for_update=True, allow_closed=True
            )
            result = await lifecycle.reactivate(session, record, request, self.settings, now)
            return result, record.pk

        return await self.tx.mutate("ReactivateDossier", request, R.Dossier, body)

    async def AcceptTermsOfUse(  # noqa: N802 - gRPC method name
        self, request: R.AcceptTermsOfUseRequest, context: grpc.aio.ServicerContext
    ) -> R.Dossier:
        dossier_id = names.parse_dossier(request.name)

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> tuple[R.Dossier, int]:
            record = await self._open(
                session, principal, dossier_id, now, for_update=True, allow_terms=True
            )
            result = await lifecycle.accept_terms(session, record, request, self.settings, now)
            return result, record.pk

        return await self.tx.mutate("AcceptTermsOfUse", request, R.Dossier, body)

    # -- documents --------------------------------------------------------

    async def CreateDocument(  # noqa: N802 - gRPC method name
        self, request: R.CreateDocumentRequest, context: grpc.aio.ServicerContext
    ) -> R.Document:
        dossier_id = names.parse_record(request.parent, "parent")

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> tuple[R.Document, int]:
            record = await self._open(session, principal, dossier_id, now)
            result = await documents.create(session, record, request, self.settings, now)
            return result, record.pk

        return await self.tx.mutate("CreateDocument", request, R.Document, body)

    async def GetDocument(  # noqa: N802 - gRPC method name
        self, request: R.GetDocumentRequest, context: grpc.aio.ServicerContext
    ) -> R.Document:
        dossier_id, document_id = names.parse_document(request.name)

        async def body(session: AsyncSession, principal: Principal, now: datetime) -> R.Document:
            return await documents.read(
                session, principal, dossier_id, document_id, request.view, self.settings, now
            )

        return await self.tx.read_single(body)

    async def ListDocuments(  # noqa: N802 - gRPC method name
        self, request: R.ListDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> R.ListDocumentsResponse:
        dossier_id = names.parse_record(request.parent, "parent")

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> R.ListDocumentsResponse:
            record = await self._open(session, principal, dossier_id, now)
            return await listing.list_documents(session, record, request, self.page_tokens, now)

        return await self.tx.read(body)

    async def SearchDocuments(  # noqa: N802 - gRPC method name
        self, request: R.SearchDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> R.SearchDocumentsResponse:
        dossier_id = names.parse_record(request.parent, "parent")

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> R.SearchDocumentsResponse:
            record = await self._open(session, principal, dossier_id, now)
            return await listing.search_documents(session, record, request, self.page_tokens, now)

        return await self.tx.read(body)

    async def ReplaceDocument(  # noqa: N802 - gRPC method name
        self, request: R.ReplaceDocumentRequest, context: grpc.aio.ServicerContext
    ) -> R.Document:
        dossier_id, document_id = names.parse_document(request.name)

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> tuple[R.Document, int]:
            record = await self._open(session, principal, dossier_id, now)
            result = await documents.replace(
                session, record, document_id, request, self.settings, now
            )
            return result, record.pk

        return await self.tx.mutate("ReplaceDocument", request, R.Document, body)

    async def UpdateDocumentVisibility(  # noqa: N802 - gRPC method name
        self, request: R.UpdateDocumentVisibilityRequest, context: grpc.aio.ServicerContext
    ) -> R.Document:
        dossier_id, document_id = names.parse_document(request.name)

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> tuple[R.Document, int]:
            record = await self._open(session, principal, dossier_id, now)
            result = await documents.update_visibility(
                session, record, document_id, request, self.settings, now
            )
            return result, record.pk

        return await self.tx.mutate("UpdateDocumentVisibility", request, R.Document, body)

    async def ArchiveDocument(  # noqa: N802 - gRPC method name
        self, request: R.ArchiveDocumentRequest, context: grpc.aio.ServicerContext
    ) -> R.Document:
        dossier_id, document_id = names.parse_document(request.name)

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> tuple[R.Document, int]:
            record = await self._open(session, principal, dossier_id, now)
            result = await documents.archive(session, record, document_id, request, now)
            return result, record.pk

        return await self.tx.mutate("ArchiveDocument", request, R.Document, body)

    async def DeleteDocument(  # noqa: N802 - gRPC method name
        self, request: R.DeleteDocumentRequest, context: grpc.aio.ServicerContext
    ) -> R.Document:
        dossier_id, document_id = names.parse_document(request.name)

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> tuple[R.Document, int]:
            record = await self._open(session, principal, dossier_id, now)
            result = await documents.delete(session, record, document_id, request, now)
            return result, record.pk

        return await self.tx.mutate("DeleteDocument", request, R.Document, body)

    async def GetDocumentAttributes(  # noqa: N802 - gRPC method name
        self, request: R.GetDocumentAttributesRequest, context: grpc.aio.ServicerContext
    ) -> R.DocumentAttributes:
        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> R.DocumentAttributes:
            return await attributes.document_attributes(session, principal, request.name, now)

        return await self.tx.read(body)

    # -- health profile and vaccinations ----------------------------------

    async def GetHealthProfile(  # noqa: N802 - gRPC method name
        self, request: R.GetHealthProfileRequest, context: grpc.aio.ServicerContext
    ) -> R.HealthProfile:
        dossier_id = names.parse_profile_ref(request.name)

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> R.HealthProfile:
            record = await self._open(session, principal, dossier_id, now)
            return await profile.get_profile(
                session,
                record,
                request.measurement_window_days,
                self.settings,
                now,
                await directives.current(session, record, self.settings),
            )

        return await self.tx.read(body)

    async def UpdateHealthProfile(  # noqa: N802 - gRPC method name
        self, request: R.UpdateHealthProfileRequest, context: grpc.aio.ServicerContext
    ) -> R.HealthProfile:
        dossier_id = names.parse_profile(request.health_profile.name, "health_profile.name")

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> tuple[R.HealthProfile, int]:
            record = await self._open(session, principal, dossier_id, now, for_update=True)
            result = await profile.update_profile(
                session,
                record,
                request,
                self.settings,
                now,
                await directives.current(session, record, self.settings),
            )
            return result, record.pk

        return await self.tx.mutate("UpdateHealthProfile", request, R.HealthProfile, body)

    async def GetAdvanceDirectives(  # noqa: N802 - gRPC method name
        self, request: R.GetAdvanceDirectivesRequest, context: grpc.aio.ServicerContext
    ) -> R.AdvanceDirectives:
        dossier_id = names.parse_advance_directives(request.name)

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> R.AdvanceDirectives:
            record = await self._open(session, principal, dossier_id, now)
            return await directives.get(session, record, self.settings)

        return await self.tx.read(body)

    async def UpdateAdvanceDirectives(  # noqa: N802 - gRPC method name
        self, request: R.UpdateAdvanceDirectivesRequest, context: grpc.aio.ServicerContext
    ) -> R.AdvanceDirectives:
        dossier_id = names.parse_advance_directives(
            request.advance_directives.name, "advance_directives.name"
        )

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> tuple[R.AdvanceDirectives, int]:
            # Locked: two writers never make the same revision number.
            record = await self._open(session, principal, dossier_id, now, for_update=True)
            result = await directives.update(session, record, request, self.settings, now)
            return result, record.pk

        return await self.tx.mutate("UpdateAdvanceDirectives", request, R.AdvanceDirectives, body)

    async def ListAdvanceDirectivesRevisions(  # noqa: N802 - gRPC method name
        self,
        request: R.ListAdvanceDirectivesRevisionsRequest,
        context: grpc.aio.ServicerContext,
    ) -> R.ListAdvanceDirectivesRevisionsResponse:
        dossier_id = names.parse_advance_directives(request.name)

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> R.ListAdvanceDirectivesRevisionsResponse:
            record = await self._open(session, principal, dossier_id, now)
            return await directives.list_revisions(
                session, record, request, self.page_tokens, self.settings
            )

        return await self.tx.read(body)

    async def CreateVaccination(  # noqa: N802 - gRPC method name
        self, request: R.CreateVaccinationRequest, context: grpc.aio.ServicerContext
    ) -> R.Vaccination:
        dossier_id = names.parse_record(request.parent, "parent")

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> tuple[R.Vaccination, int]:
            record = await self._open(session, principal, dossier_id, now)
            result = await vaccinations.create_vaccination(
                session, record, request, self.settings, now
            )
            return result, record.pk

        return await self.tx.mutate("CreateVaccination", request, R.Vaccination, body)

    async def ResolveVaccinations(  # noqa: N802 - gRPC method name
        self, request: R.ResolveVaccinationsRequest, context: grpc.aio.ServicerContext
    ) -> R.ResolveVaccinationsResponse:
        dossier_id = names.parse_dossier(request.parent, "parent")

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> R.ResolveVaccinationsResponse:
            return await vaccinations.resolve_vaccinations(
                session, principal, dossier_id, request, self.settings
            )

        return await self.tx.read(body)

    async def ListVaccinations(  # noqa: N802 - gRPC method name
        self, request: R.ListVaccinationsRequest, context: grpc.aio.ServicerContext
    ) -> R.ListVaccinationsResponse:
        dossier_id = names.parse_record(request.parent, "parent")

        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> R.ListVaccinationsResponse:
            record = await self._open(session, principal, dossier_id, now)
            return await vaccinations.list_vaccinations(
                session, record, request, self.page_tokens, self.settings
            )

        return await self.tx.read(body)

    # -- insurer ----------------------------------------------------------

    async def CountDossierCreations(  # noqa: N802 - gRPC method name
        self, request: R.CountDossierCreationsRequest, context: grpc.aio.ServicerContext
    ) -> R.CountDossierCreationsResponse:
        async def body(
            session: AsyncSession, principal: Principal, now: datetime
        ) -> R.CountDossierCreationsResponse:
            return await creations.count(session, principal, request)

        return await self.tx.read(body)
