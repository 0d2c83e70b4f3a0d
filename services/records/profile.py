"""Structured health profile: read, and merge by item id.

Items are sealed with the record's data key, each bound to its own id; the
server stamps provenance (author, times) on every added or changed item.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta

import grpc
from google.protobuf import field_mask_pb2
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.records.v1 import records_pb2
from kit.errors import ServiceError, invalid_argument, permission_denied
from services.records import answers, crypto, names
from services.records.access import Caller, RecordContext, Role
from services.records.keys import data_key, open_content
from services.records.repository import dossiers, health
from services.records.repository.rows import ProfileItemRow
from services.records.settings import RecordsSettings
from services.records.timestamps import to_dt

R = records_pb2

ProfileItem = (
    R.Allergy | R.Condition | R.Treatment | R.BloodGroup | R.EmergencyContact | R.Measurement
)
# section name → (message class, singleton?). The advance directives are not a section
# any more: they have their own revisions and rules (services/records/directives.py).
DIRECTIVES = "advance_directives"
# section name → (message class, singleton?)
SECTIONS: dict[str, tuple[type[ProfileItem], bool]] = {
    "allergies": (R.Allergy, False),
    "conditions": (R.Condition, False),
    "treatments": (R.Treatment, False),
    "blood_group": (R.BloodGroup, True),
    "emergency_contacts": (R.EmergencyContact, False),
    "measurements": (R.Measurement, False),
}


def caller_author(caller: Caller) -> R.Author:
    p = caller.principal
    if caller.role is Role.PROFESSIONAL:
        return R.Author(
            kind=R.AUTHOR_KIND_PROFESSIONAL,
            rpps=p.rpps,
            profession_code=p.profession_code,
            specialty_code=p.specialty_code,
            institution_id=p.establishment.finess,
            institution_name=p.establishment.display_name,
        )
    if caller.role is Role.REPRESENTATIVE:
        return R.Author(kind=R.AUTHOR_KIND_LEGAL_REPRESENTATIVE, display_name="Représentant légal")
    if caller.role is Role.PATIENT:
        return R.Author(kind=R.AUTHOR_KIND_PATIENT, display_name="Patient")
    return R.Author(kind=R.AUTHOR_KIND_INSURANCE, display_name=p.subject)


def require_read(caller: Caller) -> None:
    if not (caller.acts_for_patient or caller.reads_documents):
        raise permission_denied("SECTION_NOT_READABLE", "The caller may not read health data.")


def require_write(caller: Caller) -> None:
    if not (
        caller.acts_for_patient or (caller.role is Role.PROFESSIONAL and caller.writes_anything)
    ):
        raise permission_denied("SECTION_NOT_WRITABLE", "The caller may not write health data.")


def _valid(item: ProfileItem) -> bool:
    if isinstance(item, R.Allergy):
        return bool(item.substance.code or item.substance.display)
    if isinstance(item, R.Condition):
        return bool(item.code.code or item.code.display)
    if isinstance(item, R.Treatment):
        return bool(item.medication.code or item.medication.display)
    if isinstance(item, R.EmergencyContact):
        return bool(item.display_name.strip() and (item.phone or item.email))
    if isinstance(item, R.Measurement):
        return bool(
            (item.observation.code or item.observation.display)
            and item.unit
            and item.HasField("measure_time")
        )
    if isinstance(item, R.BloodGroup):
        return bool(item.abo != R.ABO_GROUP_UNSPECIFIED)
    return True


def profile_etag(revision: int) -> str:
    return f'W/"{revision}"'


async def get_profile(  # noqa: PLR0917 - the read's inputs
    session: AsyncSession,
    record: RecordContext,
    window_days: int,
    settings: RecordsSettings,
    now: datetime,
    directives: R.AdvanceDirectives | None = None,
) -> R.HealthProfile:
    require_read(record.caller)
    if window_days < 0 or window_days > 3650:
        raise invalid_argument(
            "INVALID_WINDOW", "`measurement_window_days` is 0..3650.", "measurement_window_days"
        )
    return await _read_profile(session, record, window_days, settings, now, directives)


async def _read_profile(  # noqa: PLR0917 - the read's inputs
    session: AsyncSession,
    record: RecordContext,
    window_days: int,
    settings: RecordsSettings,
    now: datetime,
    directives: R.AdvanceDirectives | None = None,
) -> R.HealthProfile:
    """The whole profile as GetHealthProfile shows it, with no permission check: a write
    projects it through `answers.health_profile` before anything leaves."""
    since = now - timedelta(days=window_days or 365)
    dek = data_key(record.row, settings)
    out = R.HealthProfile(
        name=names.profile_name(record.dossier_id),
        etag=profile_etag(record.row.profile_revision),
    )
    if record.row.profile_update_time is not None:
        out.update_time.FromDatetime(record.row.profile_update_time)
    measurements: list[R.Measurement] = []
    for row in await health.profile_items_of(session, record.pk):
        cls, singleton = SECTIONS[row.section]
        item = cls.FromString(open_content(dek, row.sealed, row.item_id))
        if singleton:
            getattr(out, row.section).CopyFrom(item)
        elif isinstance(item, R.Measurement):
            if to_dt(item.measure_time) >= since:
                measurements.append(item)
        else:
            getattr(out, row.section).append(item)
    measurements.sort(key=lambda m: (m.measure_time.seconds, m.measure_time.nanos), reverse=True)
    out.measurements.extend(measurements)
    if directives is not None:
        out.advance_directives.CopyFrom(directives)
    return out


@dataclass(frozen=True)
class _Write:
    section: str
    item: ProfileItem
    #: The stored item it changes; None: a new item.
    prior: ProfileItemRow | None


def masked_sections(mask: field_mask_pb2.FieldMask) -> frozenset[str] | None:
    """The sections an update may change (AIP-134 `update_mask`, paths relative to the
    profile); None for an empty mask: the merge of every section given, as before masks."""
    paths = list(mask.paths)
    if DIRECTIVES in paths:
        raise _directives_elsewhere("update_mask")
    if not paths:
        return None
    if paths == ["*"]:
        return frozenset(SECTIONS)
    unknown = [p for p in paths if p not in SECTIONS]
    if unknown:
        raise invalid_argument(
            "INVALID_UPDATE_MASK",
            f"update_mask paths are sections of the profile ({', '.join(SECTIONS)}) or *.",
            "update_mask",
        )
    return frozenset(paths)


def _directives_elsewhere(field: str) -> ServiceError:
    return invalid_argument(
        "ADVANCE_DIRECTIVES_NOT_IN_PROFILE",
        "Advance directives are written with UpdateAdvanceDirectives.",
        field,
    )


def _planned_writes(
    src: R.HealthProfile, existing: dict[str, ProfileItemRow], sections: frozenset[str] | None
) -> list[_Write]:
    """Every item of the request in the masked sections, checked, with the item it replaces."""
    writes: list[_Write] = []
    present = {field.name for field, _ in src.ListFields()}
    for section, (_cls, singleton) in SECTIONS.items():
        if sections is not None and section not in sections:
            continue  # AIP-134: what the mask leaves out is ignored
        if singleton:
            items = [getattr(src, section)] if section in present else []
        else:
            items = list(getattr(src, section))
        for i, item in enumerate(items):
            field = f"health_profile.{section}[{i}]"
            if not _valid(item):
                raise invalid_argument("INVALID_ITEM", f"Incomplete {section} item.", field)
            prior = None
            if item.item_id:
                prior = existing.get(item.item_id)
                if prior is None or prior.section != section:
                    raise invalid_argument("UNKNOWN_ITEM_ID", "Unknown item id.", field)
            elif singleton:
                prior = next((r for r in existing.values() if r.section == section), None)
            writes.append(_Write(section, item, prior))
    return writes


async def update_profile(  # noqa: PLR0917 - the write's inputs
    session: AsyncSession,
    record: RecordContext,
    request: R.UpdateHealthProfileRequest,
    settings: RecordsSettings,
    now: datetime,
    directives: R.AdvanceDirectives | None = None,
) -> R.HealthProfile:
    caller = record.caller
    require_write(caller)
    if request.etag and request.etag != profile_etag(record.row.profile_revision):
        raise ServiceError(grpc.StatusCode.ABORTED, "ETAG_MISMATCH", "The profile changed.")
    if request.health_profile.HasField("advance_directives"):
        raise _directives_elsewhere("health_profile.advance_directives")
    existing = {row.item_id: row for row in await health.profile_items_of(session, record.pk)}
    dek = data_key(record.row, settings)
    sections = masked_sections(request.update_mask)
    writes = _planned_writes(request.health_profile, existing, sections)
    removals: list[ProfileItemRow] = []
    for item_id in request.remove_item_ids:
        if item_id not in existing:
            raise invalid_argument("UNKNOWN_ITEM_ID", "Unknown item id.", "remove_item_ids")
        if sections is not None and existing[item_id].section not in sections:
            raise invalid_argument(
                "INVALID_UPDATE_MASK",
                "A removed item is in a section update_mask leaves out.",
                "remove_item_ids",
            )
        removals.append(existing[item_id])
    author = caller_author(caller)
    written: dict[str, bool] = {}  # item id → created by this request
    for write in writes:
        cls, _ = SECTIONS[write.section]
        stored = copy.deepcopy(write.item)
        stored.ClearField("provenance")
        prior = write.prior
        if prior is None:
            stored.item_id = names.new_id()
            stored.provenance.author.CopyFrom(author)
            stored.provenance.create_time.FromDatetime(now)
        else:
            old = cls.FromString(open_content(dek, prior.sealed, prior.item_id))
            stored.item_id = prior.item_id
            stored.provenance.author.CopyFrom(old.provenance.author)
            stored.provenance.create_time.CopyFrom(old.provenance.create_time)
        stored.provenance.last_updated_by.CopyFrom(author)
        stored.provenance.update_time.FromDatetime(now)
        written[stored.item_id] = prior is None
        sealed = crypto.seal(dek, stored.SerializeToString(deterministic=True), stored.item_id)
        if prior is None:
            await health.add_profile_item(
                session,
                dossier_pk=record.pk,
                item_id=stored.item_id,
                section=write.section,
                sealed=sealed,
                now=now,
            )
        else:
            await health.replace_profile_item(session, prior.id, sealed, now)
    for row in removals:
        await health.remove_profile_item(session, row.id, now)
    await dossiers.profile_changed(session, record.pk, now)
    record.row = await dossiers.reload(session, record.pk)
    full = await _read_profile(session, record, 0, settings, now, directives)
    return answers.health_profile(caller, full, written)
