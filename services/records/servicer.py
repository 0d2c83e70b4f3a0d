"""gRPC servicer of dmp.records.v1.RecordsService: one transaction per RPC.

Mutations are idempotent per (principal, method, request_id) with the rules of
`kit.idempotency`: a retry returns the stored first response; the same key with
another body is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.records.v1 import records_pb2, records_pb2_grpc
from kit import ins as kit_ins
from kit.context import require_principal
from kit.db import transaction, utcnow
from kit.errors import ServiceError, failed_precondition
from services.records import attributes, documents, lifecycle, names, profile
from services.records.store import REQUESTS, Loaded, load_dossier

if TYPE_CHECKING:
    from services.records.app import RecordsApp

R = records_pb2
M = TypeVar("M", bound=Message)
Body = Callable[[AsyncSession, Any, datetime], Awaitable[tuple[Any, int | None]]]


class RecordsServicer(records_pb2_grpc.RecordsServiceServicer):
    def __init__(self, app: RecordsApp) -> None:
        self.app = app
        self.settings = app.records_settings

    # -- plumbing ---------------------------------------------------------

    async def _mutate(self, method: str, request: Any, response_type: type[M], body: Body) -> M:
        principal = require_principal()
        key = REQUESTS.key(request)
        scope = principal.subject
        for attempt in (0, 1):
            now = utcnow()
            try:
                async with transaction(self.app.db) as session:
                    prior = await REQUESTS.replay(
                        session, key, scope=scope, method=method, response_type=response_type
                    )
                    if prior is not None:
                        return prior
                    result, dossier_pk = await body(session, principal, now)
                    await REQUESTS.remember(
                        session,
                        key,
                        scope=scope,
                        method=method,
                        response=result,
                        now=now,
                        dossier_pk=dossier_pk,
                    )
            except IntegrityError as exc:
                # A concurrent change committed first (same INS or unique id): run again,
                # the checks now see its row. A twin of this very request is refused by
                # REQUESTS.remember instead (ABORTED REQUEST_IN_PROGRESS).
                if attempt:
                    raise ServiceError(
                        grpc.StatusCode.ABORTED, "CONCURRENT_UPDATE", "Concurrent change; retry."
                    ) from exc
                continue
            self.app.wake_relay()
            return result  # type: ignore[no-any-return]
        raise AssertionError("unreachable")

    async def _read(self, body: Callable[[AsyncSession, Any, datetime], Awaitable[M]]) -> M:
        principal = require_principal()
        async with transaction(self.app.db) as session:
            return await body(session, principal, utcnow())

    async def _dossier(
        self,
        session: AsyncSession,
        principal: Any,
        dossier_id: str,
        now: datetime,
        *,
        for_update: bool = False,
        allow_closed: bool = False,
        allow_terms: bool = False,
    ) -> Loaded:
        return await load_dossier(
            session,
            principal,
            dossier_id=dossier_id,
            now=now,
            for_update=for_update,
            allow_closed=allow_closed,
            allow_terms=allow_terms,
            terms_version=self.settings.terms_version,
        )

    # -- record lifecycle -------------------------------------------------

    async def CreateDossier(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            return await lifecycle.create(session, request, principal, self.settings, now)

        return await self._mutate("CreateDossier", request, R.Dossier, body)

    async def GetDossier(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        kind, value = names.parse_dossier_or_alias(request.name)

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await load_dossier(
                session,
                principal,
                dossier_id=value if kind == "id" else None,
                patient_ins=kit_ins.validate(value, "name") if kind == "ins" else None,
                now=now,
                allow_closed=True,
                terms_version=self.settings.terms_version,
            )
            if loaded.row.state == R.DOSSIER_STATE_CLOSED and not loaded.caller.acts_for_patient:
                raise failed_precondition("DOSSIER_CLOSED", "The record is closed.")
            return lifecycle.to_proto(loaded.row, loaded.reps, self.settings, now)

        return await self._read(body)

    async def CloseDossier(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id = names.parse_dossier(request.name)

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(session, principal, dossier_id, now, for_update=True)
            return await lifecycle.close(session, loaded, request, self.settings, now), loaded.pk

        return await self._mutate("CloseDossier", request, R.Dossier, body)

    async def ReactivateDossier(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id = names.parse_dossier(request.name)

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(
                session, principal, dossier_id, now, for_update=True, allow_closed=True
            )
            result = await lifecycle.reactivate(session, loaded, request, self.settings, now)
            return result, loaded.pk

        return await self._mutate("ReactivateDossier", request, R.Dossier, body)

    async def AcceptTermsOfUse(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id = names.parse_dossier(request.name)

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(
                session, principal, dossier_id, now, for_update=True, allow_terms=True
            )
            result = await lifecycle.accept_terms(session, loaded, request, self.settings, now)
            return result, loaded.pk

        return await self._mutate("AcceptTermsOfUse", request, R.Dossier, body)

    # -- documents --------------------------------------------------------

    async def CreateDocument(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id = names.parse_dossier(request.parent, "parent")

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(session, principal, dossier_id, now)
            result = await documents.create(session, loaded, request, self.settings, now)
            return result, loaded.pk

        return await self._mutate("CreateDocument", request, R.Document, body)

    async def GetDocument(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id, document_id = names.parse_document(request.name)

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(session, principal, dossier_id, now)
            return await documents.get(
                session, loaded, document_id, request.view, self.settings, now
            )

        return await self._read(body)

    async def ListDocuments(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id = names.parse_dossier(request.parent, "parent")

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(session, principal, dossier_id, now)
            return await documents.list_documents(session, loaded, request, self.settings, now)

        return await self._read(body)

    async def SearchDocuments(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id = names.parse_dossier(request.parent, "parent")

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(session, principal, dossier_id, now)
            return await documents.search_documents(session, loaded, request, self.settings, now)

        return await self._read(body)

    async def ReplaceDocument(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id, document_id = names.parse_document(request.name)

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(session, principal, dossier_id, now)
            result = await documents.replace(
                session, loaded, document_id, request, self.settings, now
            )
            return result, loaded.pk

        return await self._mutate("ReplaceDocument", request, R.Document, body)

    async def UpdateDocumentVisibility(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id, document_id = names.parse_document(request.name)

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(session, principal, dossier_id, now)
            result = await documents.update_visibility(
                session, loaded, document_id, request, self.settings, now
            )
            return result, loaded.pk

        return await self._mutate("UpdateDocumentVisibility", request, R.Document, body)

    async def ArchiveDocument(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id, document_id = names.parse_document(request.name)

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(session, principal, dossier_id, now)
            result = await documents.archive(session, loaded, document_id, request, now)
            return result, loaded.pk

        return await self._mutate("ArchiveDocument", request, R.Document, body)

    async def DeleteDocument(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id, document_id = names.parse_document(request.name)

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(session, principal, dossier_id, now)
            result = await documents.delete(session, loaded, document_id, request, now)
            return result, loaded.pk

        return await self._mutate("DeleteDocument", request, R.Document, body)

    # -- health profile and vaccinations ----------------------------------

    async def GetHealthProfile(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id = names.parse_profile(request.name)

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(session, principal, dossier_id, now)
            return await profile.get_profile(
                session, loaded, request.measurement_window_days, self.settings, now
            )

        return await self._read(body)

    async def UpdateHealthProfile(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id = names.parse_profile(request.health_profile.name, "health_profile.name")

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(session, principal, dossier_id, now, for_update=True)
            result = await profile.update_profile(session, loaded, request, self.settings, now)
            return result, loaded.pk

        return await self._mutate("UpdateHealthProfile", request, R.HealthProfile, body)

    async def CreateVaccination(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id = names.parse_dossier(request.parent, "parent")

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(session, principal, dossier_id, now)
            result = await profile.create_vaccination(session, loaded, request, self.settings, now)
            return result, loaded.pk

        return await self._mutate("CreateVaccination", request, R.Vaccination, body)

    async def ListVaccinations(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        dossier_id = names.parse_dossier(request.parent, "parent")

        async def body(session: AsyncSession, principal: Any, now: datetime) -> Any:
            loaded = await self._dossier(session, principal, dossier_id, now)
            return await profile.list_vaccinations(session, loaded, request, self.settings)

        return await self._read(body)

    async def GetDocumentAttributes(  # noqa: N802 - gRPC method name
        self,
        request: records_pb2.GetDocumentAttributesRequest,
        context: grpc.aio.ServicerContext,
    ) -> records_pb2.DocumentAttributes:
        async def body(
            session: AsyncSession, principal: Any, now: datetime
        ) -> records_pb2.DocumentAttributes:
            return await attributes.document_attributes(session, principal, request.name, now)

        return await self._read(body)
