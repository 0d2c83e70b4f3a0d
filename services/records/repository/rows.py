"""Typed rows of the records tables, as the repository hands them to the domain."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Row

T = TypeVar("T")


def typed(cls: type[T], row: Row[Any]) -> T:
    """`row` as `cls`: the dataclass fields are the table's columns, by name."""
    mapping = row._mapping
    return cls(**{f.name: mapping[f.name] for f in fields(cls)})  # type: ignore[arg-type]


def typed_prefixed(cls: type[T], mapping: Any, prefix: str) -> T:
    """`cls` from the columns of a joined row labelled `<prefix><column>`."""
    return cls(**{f.name: mapping[prefix + f.name] for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class DossierRow:
    id: int
    dossier_id: str
    patient_ins: str
    identity: bytes
    contact: bytes
    birth_date: str | None
    state: int
    creation_channel: int
    creator: str
    accepted_terms_version: str
    terms_accept_time: datetime | None
    create_time: datetime
    update_time: datetime
    close_time: datetime | None
    close_reason: int
    close_comment: str
    kek_id: str
    wrapped_dek: bytes
    revision: int
    profile_revision: int
    profile_update_time: datetime | None


@dataclass(frozen=True, slots=True)
class RepresentativeRow:
    id: int
    dossier_pk: int
    representative_id: str
    role: int
    family_name: str
    given_name: str
    ins: str
    contact: bytes
    account_subject: str
    access_end_time: datetime | None


@dataclass(frozen=True, slots=True)
class DocumentRow:
    id: int
    document_id: str
    dossier_pk: int
    unique_id: str | None
    type_code: str
    class_code: str
    title: str
    author: bytes
    author_rpps: str
    author_subject: str
    submitter: str
    service_start_time: datetime | None
    service_stop_time: datetime | None
    sort_time: datetime
    practice_setting_code: str
    facility_type_code: str
    format: int
    size_bytes: int
    sha256: str
    masque_ps: bool
    invisible_patient: bool
    invisible_representants: bool
    release_time: datetime | None
    status: int
    version: int
    replaces_id: str | None
    replaced_by_id: str | None
    create_time: datetime
    update_time: datetime
    archive_time: datetime | None
    delete_time: datetime | None
    delete_reason: str
    revision: int


@dataclass(frozen=True, slots=True)
class ProfileItemRow:
    id: int
    item_id: str
    section: str
    sealed: bytes


@dataclass(frozen=True, slots=True)
class VaccinationRow:
    id: int
    vaccination_id: str
    administration_date: str
    sealed: bytes
