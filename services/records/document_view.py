"""A stored document as the API shows it (`records.v1.Document`), content aside."""

from __future__ import annotations

from datetime import datetime

from dmp.records.v1 import records_pb2
from services.records import names
from services.records.repository.rows import DocumentRow
from services.records.timestamps import ts

R = records_pb2


def etag(row: DocumentRow) -> str:
    return f'W/"{row.revision}"'


def flags_of(row: DocumentRow, now: datetime) -> list[R.ConfidentialityFlag.ValueType]:
    """The flags in force: INVISIBLE_PATIENT ends at its release time."""
    out: list[R.ConfidentialityFlag.ValueType] = []
    if row.masque_ps:
        out.append(R.CONFIDENTIALITY_FLAG_MASQUE_PS)
    released = row.release_time is not None and row.release_time <= now
    if row.invisible_patient and not released:
        out.append(R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT)
    if row.invisible_representants:
        out.append(R.CONFIDENTIALITY_FLAG_INVISIBLE_REPRESENTANTS_LEGAUX)
    return out


def to_proto(
    row: DocumentRow, dossier_id: str, now: datetime, content: bytes | None = None
) -> R.Document:
    out = R.Document(
        name=names.document_name(dossier_id, row.document_id),
        unique_id=row.unique_id or "",
        type_code=row.type_code,
        class_code=row.class_code,
        title=row.title,
        author=R.Author.FromString(row.author),
        submitter=row.submitter,
        practice_setting_code=row.practice_setting_code,
        facility_type_code=row.facility_type_code,
        format=R.DocumentFormat.ValueType(row.format),
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        confidentiality_flags=flags_of(row, now),
        status=R.DocumentStatus.ValueType(row.status),
        version=row.version,
        replaces=names.document_name(dossier_id, row.replaces_id) if row.replaces_id else "",
        replaced_by=(
            names.document_name(dossier_id, row.replaced_by_id) if row.replaced_by_id else ""
        ),
        etag=etag(row),
    )
    if content is not None:
        out.content = content
    ts(row.service_start_time, out.service_start_time)
    ts(row.service_stop_time, out.service_stop_time)
    if row.invisible_patient and row.release_time is not None and row.release_time > now:
        ts(row.release_time, out.release_time)
    ts(row.create_time, out.create_time)
    ts(row.update_time, out.update_time)
    ts(row.archive_time, out.archive_time)
    ts(row.delete_time, out.delete_time)
    return out
