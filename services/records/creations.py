"""CountDossierCreations: how many records professionals created, per professional and per
institution (a pharmacy's FINESS), for the insurer's per-record fee.

Identifiers and numbers only: no patient, no record name, no medical data. The CPAM desk
role (guichet_amo, the insurer's agents) may ask; the gateway decided so already
(ACTION_COUNT_CREATIONS), and records checks the role again, deny by default.
"""

from __future__ import annotations

from datetime import UTC, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from dmp.authz.v1 import principal_pb2
from dmp.records.v1 import records_pb2
from kit import rpps as kit_rpps
from kit import structures
from kit.errors import invalid_argument, permission_denied
from services.records.access import DESK_ROLE, refuse_excluded
from services.records.repository import dossiers

R = records_pb2
P = principal_pb2
MAX_WINDOW = timedelta(days=366)


async def count(
    session: AsyncSession,
    principal: principal_pb2.Principal,
    request: records_pb2.CountDossierCreationsRequest,
) -> records_pb2.CountDossierCreationsResponse:
    refuse_excluded(principal)
    if principal.kind != P.PRINCIPAL_KIND_STAFF or DESK_ROLE not in principal.roles:
        raise permission_denied("ACTION_NOT_ALLOWED", "Only the insurer's agents count creations.")
    if not (request.HasField("start_time") and request.HasField("end_time")):
        raise invalid_argument(
            "WINDOW_REQUIRED", "start_time and end_time are required.", "start_time"
        )
    start = request.start_time.ToDatetime(tzinfo=UTC)
    end = request.end_time.ToDatetime(tzinfo=UTC)
    if end <= start:
        raise invalid_argument("INVALID_WINDOW", "end_time must be after start_time.", "end_time")
    if end - start > MAX_WINDOW:
        raise invalid_argument("WINDOW_TOO_LONG", "The window is at most 366 days.", "end_time")
    creator = (
        kit_rpps.validate(request.creator_rpps, "creator_rpps") if request.creator_rpps else ""
    )
    institution = (
        structures.validate_institution(request.institution_id) if request.institution_id else ""
    )
    by_creator, by_institution = await dossiers.creation_counts(
        session, start=start, end=end, creator=creator, institution=institution
    )
    return R.CountDossierCreationsResponse(
        creators=[R.CreatorCount(creator_rpps=c, dossier_count=n) for c, n in by_creator],
        institutions=[
            R.InstitutionCount(institution_id=i, dossier_count=n) for i, n in by_institution
        ],
        total_count=sum(n for _, n in by_creator),
    )
