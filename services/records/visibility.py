"""Which documents of a record one caller sees, as data, and its evaluation on one row.

`access.Caller.visibility` derives it from the signed scope; this module
evaluates it on a loaded row (a single read) and `repository.documents`
evaluates the same fields in SQL (lists, counts, search): one set of rules,
two evaluators kept side by side in review.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dmp.records.v1 import records_pb2
from services.records.repository.rows import DocumentRow


@dataclass(frozen=True)
class Visibility:
    """Deny by default: `reads` False sees nothing; the author always sees their own."""

    reads: bool
    subject: str
    class_codes: frozenset[str] = frozenset()
    type_codes: frozenset[str] = frozenset()
    #: MASQUE_PS documents are hidden (professionals without `masked_visible`).
    hides_masked: bool = False
    #: INVISIBLE_PATIENT documents are hidden until their release (the patient side).
    hides_unreleased: bool = False
    #: INVISIBLE_REPRESENTANTS_LEGAUX documents are hidden (a legal representative).
    hides_from_representatives: bool = False


NOBODY = Visibility(reads=False, subject="")


def admits(vis: Visibility, row: DocumentRow, now: datetime) -> bool:
    """Python twin of `repository.documents.visible` for one row."""
    if not vis.reads:
        return False
    mine = row.author_subject == vis.subject
    if row.class_code not in vis.class_codes and row.type_code not in vis.type_codes:
        return False
    if row.status == records_pb2.DOCUMENT_STATUS_DELETED and not mine:
        return False
    if vis.hides_masked and row.masque_ps and not mine:
        return False
    if vis.hides_unreleased and row.invisible_patient and not mine:
        released = row.release_time is not None and row.release_time <= now
        if not released:
            return False
    return not (vis.hides_from_representatives and row.invisible_representants and not mine)
