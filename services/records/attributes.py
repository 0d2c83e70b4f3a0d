"""What consent's decision about one document depends on, read for the gateway.

The gateway is the one policy enforcement point: before it asks consent about
a call that names a document (read, archive, delete), it reads here the
attributes records will enforce — class, type, confidentiality in force,
author, deletion — so consent decides, logs and alerts on exactly what
records will then serve. Nothing medical leaves: no title, no content.
Internal to the platform (only a signed internal principal reaches it).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dmp.authz.v1 import principal_pb2
from dmp.records.v1 import records_pb2
from kit.errors import not_found, permission_denied
from services.records import names
from services.records.document_view import flags_of
from services.records.repository import documents

R = records_pb2
_CODES = {
    R.CONFIDENTIALITY_FLAG_MASQUE_PS: "MASQUE_PS",
    R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT: "INVISIBLE_PATIENT",
    R.CONFIDENTIALITY_FLAG_INVISIBLE_REPRESENTANTS_LEGAUX: "INVISIBLE_REPRESENTANTS_LEGAUX",
}


async def document_attributes(
    session: AsyncSession, principal: principal_pb2.Principal, name: str, now: datetime
) -> records_pb2.DocumentAttributes:
    """The attributes of `name`; NOT_FOUND when no such document exists under that record."""
    if principal.kind != principal_pb2.PRINCIPAL_KIND_INTERNAL:
        raise permission_denied("INTERNAL_METHOD", "This method is internal to the platform.")
    dossier_id, document_id = names.parse_document(name)
    row = await documents.find_by_name(session, dossier_id, document_id)
    if row is None:
        raise not_found("NOT_FOUND", "Document not found.")
    return R.DocumentAttributes(
        name=name,
        class_code=row.class_code,
        type_code=row.type_code,
        confidentiality_codes=[_CODES[flag] for flag in flags_of(row, now)],
        author_rpps=row.author_rpps or "",
        author_subject=row.author_subject,
        deleted=row.status == R.DOCUMENT_STATUS_DELETED,
    )
