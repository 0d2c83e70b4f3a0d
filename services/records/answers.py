"""What a write answers: never more than the same caller may read.

Rule 5 lets a professional write without a read grant; it never lets them read
by writing. So every write RPC of records answers one of two shapes:

- the *full* resource, exactly as the matching read RPC shows it to this caller
  (GetDocument in view BASIC, GetHealthProfile, ListVaccinations' entry), when
  records itself knows that this caller may read it back;
- otherwise a *receipt*: the resource name, its etag and `update_time`, and what
  this very request wrote: the values the caller sent and the stamps the server
  put on them (new ids, the provenance of this write, the class derived from the
  type, the status the write set). Nothing that anyone else stored.

Who may read back. Records establishes it only for the patient and an active
legal representative: their standing comes from records' own data (INS,
representatives), and the read path's visibility rules then apply unchanged
(`access.can_see` for a document; the whole profile and every vaccination).
A professional's write is decided under rule 5 without looking for a grant,
and the scope consent stamps on a write lists the profession's readable classes
whether or not the professional has standing on this record: a write's scope
is no read grant, so every professional gets receipts (GetHealthProfile,
GetDocument and ListVaccinations answer them when they do hold a grant).
Staff and services never read medical content: receipts too.

Dossier answers (CreateDossier, CloseDossier, ReactivateDossier,
AcceptTermsOfUse) need no projection: the lifecycle writers other than the
creator are the patient, a representative or a CPAM desk, who all read the
administrative part, and a professional's CreateDossier answer holds only what
that request wrote (the identity, contacts and representatives it sent, and
the stamps of the creation).

A receipt is built by keeping listed fields of the full answer, so a field
added to a resource later stays out of receipts until it is listed here:
deny by default.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import TypeVar

from google.protobuf.message import Message

from dmp.records.v1 import records_pb2
from services.records.access import Caller, can_see
from services.records.repository.rows import DocumentRow

R = records_pb2
M = TypeVar("M", bound=Message)

#: Every receipt names the resource and its version.
ALWAYS = ("name", "etag", "update_time")

#: A document version made by this request (CreateDocument, ReplaceDocument): all of
#: its metadata is what the caller sent, or stamped by the server for this write.
NEW_VERSION = (
    "unique_id",
    "type_code",
    "class_code",
    "title",
    "author",
    "submitter",
    "service_start_time",
    "service_stop_time",
    "practice_setting_code",
    "facility_type_code",
    "format",
    "size_bytes",
    "sha256",
    "confidentiality_flags",
    "status",
    "version",
    "replaces",
    "release_time",
    "create_time",
)
#: What UpdateDocumentVisibility, ArchiveDocument and DeleteDocument write.
VISIBILITY = ("confidentiality_flags", "release_time")
ARCHIVED = ("status", "archive_time")
DELETED = ("status", "delete_time")

#: A vaccination is created whole by one request (CreateVaccination).
NEW_VACCINATION = (
    "vaccine",
    "target_diseases",
    "professional",
    "administration_date",
    "lot_number",
    "dose_number",
    "booster_date",
    "note",
    "provenance",
)


def may_read_back(caller: Caller) -> bool:
    """Whether records itself knows the caller may read what they wrote (see module doc)."""
    return caller.acts_for_patient


def receipt(full: M, fields: Collection[str]) -> M:
    """`full` keeping only `ALWAYS` and `fields`."""
    out = type(full)()
    keep = {*ALWAYS, *fields}
    for field, _value in full.ListFields():
        if field.name in keep:
            target = getattr(out, field.name)
            if field.is_repeated:
                target.extend(getattr(full, field.name))
            elif field.message_type is not None:
                target.CopyFrom(getattr(full, field.name))
            else:
                setattr(out, field.name, getattr(full, field.name))
    return out


def document(
    caller: Caller,
    full: R.Document,
    row: DocumentRow,
    now: datetime,
    *,
    wrote: Collection[str],
    set_flags: Collection[int] | None = None,
) -> R.Document:
    """The answer of a document write: `full` if the caller reads `row` back, else a receipt.

    `set_flags`: for a visibility change, the flags this request set; the receipt
    shows those only, not flags someone else put on the document.
    """
    if may_read_back(caller) and can_see(caller, row, now):
        return full
    out = receipt(full, wrote)
    if set_flags is not None:
        kept = [f for f in out.confidentiality_flags if f in set_flags]
        del out.confidentiality_flags[:]
        out.confidentiality_flags.extend(kept)
        if R.CONFIDENTIALITY_FLAG_INVISIBLE_PATIENT not in kept:
            out.ClearField("release_time")
    return out


def health_profile(
    caller: Caller, full: R.HealthProfile, written: Mapping[str, bool]
) -> R.HealthProfile:
    """The answer of UpdateHealthProfile: `full` (GetHealthProfile's view) to a caller who
    reads it back, else the items this request wrote (`written`: item id → created by this
    request). An item it changed keeps only the stamp of this write: who first recorded
    it, and when, belongs to someone else."""
    if may_read_back(caller):
        return full
    out = receipt(full, ())
    for field, value in full.ListFields():
        if field.message_type is None or "item_id" not in field.message_type.fields_by_name:
            continue
        items = list(value) if field.is_repeated else [value]
        for item in items:
            if item.item_id not in written:
                continue
            kept = type(item)()
            kept.CopyFrom(item)
            if not written[item.item_id]:
                kept.provenance.ClearField("author")
                kept.provenance.ClearField("create_time")
            if field.is_repeated:
                getattr(out, field.name).append(kept)
            else:
                getattr(out, field.name).CopyFrom(kept)
    return out


def vaccination(caller: Caller, full: R.Vaccination) -> R.Vaccination:
    """The answer of CreateVaccination: the entry, all of it written by this request."""
    if may_read_back(caller):
        return full
    return receipt(full, NEW_VACCINATION)
