"""Checks of a new document version (create and replace), before anything is written.

The class code is derived from the type code, never taken from the client; the
author is the caller; the content must match its declared format and hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import grpc

from dmp.records.v1 import records_pb2
from kit import codes
from kit.errors import ServiceError, invalid_argument, permission_denied
from services.records import content as content_checks
from services.records.access import Caller, Role
from services.records.repository.documents import FLAG_COLUMNS
from services.records.settings import RecordsSettings
from services.records.timestamps import to_dt

R = records_pb2
PATIENT_CLASS = "90"
PATIENT_DEFAULT_TYPE = "EXPPAT_2"
CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class Prepared:
    type_code: str
    class_code: str
    title: str
    author: R.Author
    fmt: int
    content: bytes
    sha256: str
    extracted: str
    start: datetime | None
    stop: datetime | None
    flags: set[R.ConfidentialityFlag.ValueType]
    unique_id: str | None
    practice_setting_code: str
    facility_type_code: str


def _author(caller: Caller, given: R.Author) -> R.Author:
    principal = caller.principal
    author = R.Author()
    if caller.role is Role.PROFESSIONAL:
        if given.rpps and given.rpps != principal.rpps:
            raise invalid_argument(
                "AUTHOR_MISMATCH", "The author must be the caller.", "document.author.rpps"
            )
        author.kind = R.AUTHOR_KIND_PROFESSIONAL
        author.rpps = principal.rpps
        author.profession_code = principal.profession_code
        author.specialty_code = principal.specialty_code
        author.display_name = given.display_name
        author.institution_id = given.institution_id
        author.institution_name = given.institution_name
        via = principal.establishment
        if via.finess:
            # Deposited through an establishment's information system: the institution is the
            # one the gateway verified, whatever the client or the CDA header says.
            author.institution_id = via.finess
            author.institution_name = via.display_name
    elif caller.role is Role.PATIENT:
        author.kind = R.AUTHOR_KIND_PATIENT
        author.display_name = "Patient"
    elif caller.role is Role.REPRESENTATIVE:
        author.kind = R.AUTHOR_KIND_LEGAL_REPRESENTATIVE
        author.display_name = "Représentant légal"
    else:
        author.kind = R.AUTHOR_KIND_INSURANCE
        author.display_name = given.display_name or principal.subject
    return author


def _classify(caller: Caller, doc: R.Document) -> tuple[str, str]:
    """(type code, class code) the caller may write."""
    type_code = doc.type_code.strip()
    if not type_code and caller.acts_for_patient:
        type_code = PATIENT_DEFAULT_TYPE
    if type_code not in codes.table("document_types"):
        raise invalid_argument(
            "UNKNOWN_TYPE_CODE", "The document type code is unknown.", "document.type_code"
        )
    class_code = codes.document_class_of(type_code)
    if caller.acts_for_patient and class_code != PATIENT_CLASS:
        raise permission_denied(
            "CLASS_NOT_WRITABLE", "Documents deposited by the patient are of class 90."
        )
    if not caller.may_write(class_code, type_code):
        raise permission_denied("CLASS_NOT_WRITABLE", "The caller may not write this class.")
    return type_code, class_code


def _content(doc: R.Document, settings: RecordsSettings) -> tuple[bytes, str, str]:
    """(content, its SHA-256, its indexed text)."""
    if doc.format not in R.DocumentFormat.values() or doc.format == R.DOCUMENT_FORMAT_UNSPECIFIED:
        raise invalid_argument("FORMAT_REQUIRED", "The format is required.", "document.format")
    data = bytes(doc.content)
    if not data:
        raise invalid_argument("CONTENT_EMPTY", "The content is empty.", "document.content")
    if len(data) > settings.max_document_bytes:
        raise ServiceError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "CONTENT_TOO_LARGE",
            f"The content exceeds {settings.max_document_bytes} bytes.",
        )
    digest = hashlib.sha256(data).hexdigest()
    if doc.sha256 and doc.sha256.lower() != digest:
        raise invalid_argument(
            "CONTENT_HASH_MISMATCH", "The SHA-256 does not match the content.", "document.sha256"
        )
    return data, digest, content_checks.check(doc.format, data)


def _service_period(doc: R.Document, now: datetime) -> tuple[datetime | None, datetime | None]:
    start = to_dt(doc.service_start_time) if doc.HasField("service_start_time") else None
    stop = to_dt(doc.service_stop_time) if doc.HasField("service_stop_time") else None
    limit = now + CLOCK_SKEW
    if (start is not None and start > limit) or (stop is not None and stop > limit):
        raise invalid_argument(
            "SERVICE_TIME_IN_FUTURE", "Service dates cannot be in the future.", "document"
        )
    if stop is not None and start is not None and stop < start:
        raise invalid_argument(
            "SERVICE_STOP_BEFORE_START",
            "The service stop time is before its start.",
            "document.service_stop_time",
        )
    if stop is not None and start is None:
        raise invalid_argument(
            "SERVICE_START_REQUIRED",
            "A stop time needs a start time.",
            "document.service_start_time",
        )
    return start, stop


def prepare(caller: Caller, doc: R.Document, settings: RecordsSettings, now: datetime) -> Prepared:
    """Every metadata rule, in order; the first broken one is the answer."""
    type_code, class_code = _classify(caller, doc)
    title = doc.title.strip()
    if not title:
        raise invalid_argument("TITLE_REQUIRED", "A title is required.", "document.title")
    if len(title) > 255:
        raise invalid_argument("TITLE_TOO_LONG", "The title is too long.", "document.title")
    data, digest, extracted = _content(doc, settings)
    start, stop = _service_period(doc, now)
    flags = set(doc.confidentiality_flags)
    if not flags.issubset(FLAG_COLUMNS):
        raise invalid_argument(
            "INVALID_FLAG", "Unknown confidentiality flag.", "document.confidentiality_flags"
        )
    if caller.acts_for_patient and flags - {R.CONFIDENTIALITY_FLAG_MASQUE_PS}:
        raise permission_denied(
            "FLAG_CHANGE_NOT_ALLOWED", "The patient may only mask documents from professionals."
        )
    for code, table in (
        (doc.practice_setting_code, "practice_settings"),
        (doc.facility_type_code, "healthcare_facility_types"),
    ):
        if code and not codes.is_valid(table, code):
            raise invalid_argument("UNKNOWN_CODE", f"Unknown {table} code.", "document")
    unique_id = doc.unique_id.strip() or None
    if unique_id is not None and len(unique_id) > 128:
        raise invalid_argument("UNIQUE_ID_TOO_LONG", "The unique id is too long.", "document")
    return Prepared(
        type_code=type_code,
        class_code=class_code,
        title=title,
        author=_author(caller, doc.author),
        fmt=doc.format,
        content=data,
        sha256=digest,
        extracted=extracted,
        start=start,
        stop=stop,
        flags=flags,
        unique_id=unique_id,
        practice_setting_code=doc.practice_setting_code,
        facility_type_code=doc.facility_type_code,
    )
