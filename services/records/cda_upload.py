"""A CDA upload checked against its own header before anything else is checked or written.

Identity vigilance first: a document about someone else never enters a record, so the
header's patient (every recordTarget INS) must be the record's patient
(FAILED_PRECONDITION CDA_PATIENT_MISMATCH), and a CDA naming no INS at all is refused
(INVALID_ARGUMENT CDA_PATIENT_MISSING): the record's patient cannot be shown to be the
document's. Then the document may not contradict itself: a declared type other than the
header's is CDA_TYPE_MISMATCH, a header author whose RPPS is not the depositing
professional is CDA_AUTHOR_MISMATCH (the rule a declared author already follows), a
restricted confidentiality level the record cannot express is refused. What the client
left empty (title, type, service times, author's name and institution, practice setting,
facility type) is filled from the header; what it gave wins, the type excepted.

`completed` returns the document `document_checks.prepare` then checks as any other, so
every other rule (class writable, dates, codes) applies to header values too.
"""

from __future__ import annotations

import re

from dmp.records.v1 import records_pb2
from kit import codes
from kit import ins as kit_ins
from kit.errors import failed_precondition, invalid_argument
from services.records import cda
from services.records.access import Caller, RecordContext, Role
from services.records.settings import RecordsSettings
from services.records.timestamps import ts

R = records_pb2
#: HL7 Confidentiality: N is what a DMP document carries; masking is the record's own flags.
NORMAL = cda.Coded("N", "2.16.840.1.113883.5.25")
_CDA_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?ClinicalDocument[\s/>]")


def _may_write_some(caller: Caller) -> bool:
    """Callers who may write nothing get `prepare`'s refusal, never a word about content."""
    scope = caller.scope
    return bool(
        scope is not None
        and not scope.administrative_only
        and caller.role not in (Role.DESK, Role.ADMIN_STAFF)
        and (scope.writable_class_codes or scope.writable_type_codes)
    )


def _refuse_cda_as_text(doc: R.Document) -> None:
    """A CDA declared as plain text would skip the header check."""
    head = bytes(doc.content[:65536]).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<") and _CDA_ROOT.search(head):
        raise invalid_argument(
            "CDA_FORMAT_REQUIRED",
            "A CDA document is uploaded as DOCUMENT_FORMAT_CDA_XML, so its header is checked.",
            "document.format",
        )


def _check_patient(header: cda.Header, record_ins: str, roots: tuple[str, ...]) -> None:
    if header.record_targets > 1:
        raise failed_precondition(
            "CDA_PATIENT_MISMATCH",
            "The CDA header names more than one patient (recordTarget); "
            "a document enters one patient's record.",
        )
    found = [kit_ins.normalize(ext) for root, ext in header.patient_ids if root in roots]
    if not found:
        raise invalid_argument(
            "CDA_PATIENT_MISSING",
            "The CDA header carries no INS (recordTarget/patientRole/id with root "
            f"{', '.join(roots)}): the record's patient cannot be matched.",
            "document.content",
        )
    if any(value != record_ins for value in found):
        raise failed_precondition(
            "CDA_PATIENT_MISMATCH",
            "The CDA header's patient (recordTarget INS) is not this record's patient.",
        )


def _type_code(header: cda.Header, declared: str) -> str:
    known = codes.table("document_types").get(header.type.code)
    if known is None or (header.type.system and known.get("code_system") != header.type.system):
        raise invalid_argument(
            "CDA_TYPE_UNKNOWN",
            "The CDA header's document type (ClinicalDocument/code) is not a DMP type "
            "(document_types).",
            "document.content",
        )
    if declared and declared != header.type.code:
        raise invalid_argument(
            "CDA_TYPE_MISMATCH",
            f"The declared type {declared} contradicts the CDA header's type {header.type.code}.",
            "document.type_code",
        )
    return header.type.code


def _check_author(caller: Caller, header: cda.Header) -> None:
    author = header.author
    professional = caller.role is Role.PROFESSIONAL
    if professional and author is not None and author.rpps not in ("", caller.principal.rpps):
        raise invalid_argument(
            "CDA_AUTHOR_MISMATCH",
            "The CDA header's author (assignedAuthor/id RPPS) is not the caller.",
            "document.content",
        )


def _check_confidentiality(header: cda.Header) -> None:
    if header.confidentiality.code and header.confidentiality.code != NORMAL.code:
        raise invalid_argument(
            "CDA_CONFIDENTIALITY_UNSUPPORTED",
            "The CDA header's confidentialityCode must be N; restrict a document with "
            "confidentiality_flags.",
            "document.content",
        )


def _code(value: cda.Coded, table: str, what: str) -> str:
    """A header code of `table`, matched with its code system; "" when the header has none."""
    if not value.code:
        return ""
    known = codes.table(table).get(value.code)
    if known is None or (value.system and known.get("code_system") != value.system):
        raise invalid_argument(
            "CDA_UNKNOWN_CODE", f"The CDA header's {what} code is not in {table}.", "document"
        )
    return value.code


def _fill(doc: R.Document, header: cda.Header, type_code: str) -> None:
    doc.type_code = type_code
    if not doc.title.strip():
        doc.title = header.title
    if not doc.HasField("service_start_time") and not doc.HasField("service_stop_time"):
        ts(header.service_start, doc.service_start_time)
        ts(header.service_stop, doc.service_stop_time)
    if not doc.practice_setting_code:
        doc.practice_setting_code = _code(
            header.practice_setting, "practice_settings", "practice setting"
        )
    if not doc.facility_type_code:
        doc.facility_type_code = _code(
            header.facility_type, "healthcare_facility_types", "healthcare facility"
        )
    author = header.author
    if author is not None:
        if not doc.author.display_name:
            doc.author.display_name = author.display_name
        if not doc.author.institution_id and not doc.author.institution_name:
            doc.author.institution_id = author.institution_id
            doc.author.institution_name = author.institution_name


def completed(record: RecordContext, doc: R.Document, settings: RecordsSettings) -> R.Document:
    """`doc` with its omitted metadata filled from its CDA header, once the header is shown
    to be about the record's patient and coherent with what was declared; other formats
    (and callers who may write nothing) pass unchanged."""
    caller = record.caller
    if not _may_write_some(caller):
        return doc
    if doc.format == R.DOCUMENT_FORMAT_TEXT_PLAIN:
        _refuse_cda_as_text(doc)
    if doc.format != R.DOCUMENT_FORMAT_CDA_XML:
        return doc
    content = bytes(doc.content)
    if not content or len(content) > settings.max_document_bytes:
        return doc  # prepare answers CONTENT_EMPTY / CONTENT_TOO_LARGE, as for any format
    header = cda.read_header(content, settings.max_cda_bytes)
    _check_patient(header, record.row.patient_ins, settings.cda_ins_roots)
    type_code = _type_code(header, doc.type_code.strip())
    _check_author(caller, header)
    _check_confidentiality(header)
    filled = R.Document()
    filled.CopyFrom(doc)
    _fill(filled, header, type_code)
    return filled
