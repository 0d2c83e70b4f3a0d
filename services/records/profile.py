"""Structured health profile (merge by item id) and vaccinations.

Items are sealed with the record's data key, each bound to its own id; the
server stamps provenance (author, times) on every added or changed item.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from typing import Any

import grpc
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.records.v1 import records_pb2
from kit.errors import ServiceError, already_exists, invalid_argument, permission_denied
from services.records import answers, crypto, names, pagination
from services.records.access import Caller, Role
from services.records.documents import token_key
from services.records.models import dossiers, profile_items, vaccinations
from services.records.settings import RecordsSettings
from services.records.store import Loaded, data_key, open_content, to_dt

R = records_pb2

# section name → (message class, singleton?)
SECTIONS: dict[str, tuple[Any, bool]] = {
    "allergies": (R.Allergy, False),
    "conditions": (R.Condition, False),
    "treatments": (R.Treatment, False),
    "blood_group": (R.BloodGroup, True),
    "advance_directives": (R.AdvanceDirectives, True),
    "emergency_contacts": (R.EmergencyContact, False),
    "measurements": (R.Measurement, False),
}


def caller_author(caller: Caller) -> Any:
    p = caller.principal
    if caller.role is Role.PROFESSIONAL:
        return R.Author(
            kind=R.AUTHOR_KIND_PROFESSIONAL,
            rpps=p.rpps,
            profession_code=p.profession_code,
            specialty_code=p.specialty_code,
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


def _valid(section: str, item: Any) -> bool:
    if section == "allergies":
        return bool(item.substance.code or item.substance.display)
    if section == "conditions":
        return bool(item.code.code or item.code.display)
    if section == "treatments":
        return bool(item.medication.code or item.medication.display)
    if section == "emergency_contacts":
        return bool(item.display_name.strip() and (item.phone or item.email))
    if section == "measurements":
        return bool(
            (item.observation.code or item.observation.display)
            and item.unit
            and item.HasField("measure_time")
        )
    if section == "blood_group":
        return bool(item.abo != R.ABO_GROUP_UNSPECIFIED)
    return True


def profile_etag(revision: int) -> str:
    return f'W/"{revision}"'


async def get_profile(
    session: AsyncSession,
    loaded: Loaded,
    window_days: int,
    settings: RecordsSettings,
    now: datetime,
) -> Any:
    require_read(loaded.caller)
    if window_days < 0 or window_days > 3650:
        raise invalid_argument(
            "INVALID_WINDOW", "`measurement_window_days` is 0..3650.", "measurement_window_days"
        )
    return await _read_profile(session, loaded, window_days, settings, now)


async def _read_profile(
    session: AsyncSession,
    loaded: Loaded,
    window_days: int,
    settings: RecordsSettings,
    now: datetime,
) -> Any:
    """The whole profile as GetHealthProfile shows it, with no permission check: a write
    projects it through `answers.health_profile` before anything leaves."""
    since = now - timedelta(days=window_days or 365)
    dek = data_key(loaded.row, settings)
    rows = (
        await session.execute(
            select(profile_items)
            .where(profile_items.c.dossier_pk == loaded.pk, profile_items.c.removed.is_(False))
            .order_by(profile_items.c.id)
        )
    ).all()
    out = R.HealthProfile(
        name=names.profile_name(loaded.dossier_id),
        etag=profile_etag(loaded.row.profile_revision),
    )
    if loaded.row.profile_update_time is not None:
        out.update_time.FromDatetime(loaded.row.profile_update_time)
    measurements = []
    for row in rows:
        cls, singleton = SECTIONS[row.section]
        item = cls.FromString(open_content(dek, row.sealed, row.item_id))
        if singleton:
            getattr(out, row.section).CopyFrom(item)
        elif row.section == "measurements":
            if to_dt(item.measure_time) >= since:
                measurements.append(item)
        else:
            getattr(out, row.section).append(item)
    measurements.sort(key=lambda m: (m.measure_time.seconds, m.measure_time.nanos), reverse=True)
    out.measurements.extend(measurements)
    return out


async def update_profile(  # noqa: PLR0912, PLR0915 - validate every section, then write
    session: AsyncSession, loaded: Loaded, request: Any, settings: RecordsSettings, now: datetime
) -> Any:
    caller = loaded.caller
    require_write(caller)
    if request.etag and request.etag != profile_etag(loaded.row.profile_revision):
        raise ServiceError(grpc.StatusCode.ABORTED, "ETAG_MISMATCH", "The profile changed.")
    existing = {
        row.item_id: row
        for row in (
            await session.execute(
                select(profile_items).where(
                    profile_items.c.dossier_pk == loaded.pk, profile_items.c.removed.is_(False)
                )
            )
        ).all()
    }
    dek = data_key(loaded.row, settings)
    author = caller_author(caller)
    src = request.health_profile
    writes: list[tuple[str, Any, Any]] = []  # (section, item, existing row or None)
    for section, (_cls, singleton) in SECTIONS.items():
        if singleton:
            items = [getattr(src, section)] if src.HasField(section) else []
        else:
            items = list(getattr(src, section))
        for i, item in enumerate(items):
            field = f"health_profile.{section}[{i}]"
            if not _valid(section, item):
                raise invalid_argument("INVALID_ITEM", f"Incomplete {section} item.", field)
            prior = None
            if item.item_id:
                prior = existing.get(item.item_id)
                if prior is None or prior.section != section:
                    raise invalid_argument("UNKNOWN_ITEM_ID", "Unknown item id.", field)
            elif singleton:
                prior = next((r for r in existing.values() if r.section == section), None)
            writes.append((section, item, prior))
    removals = []
    for item_id in request.remove_item_ids:
        if item_id not in existing:
            raise invalid_argument("UNKNOWN_ITEM_ID", "Unknown item id.", "remove_item_ids")
        removals.append(existing[item_id])
    written: dict[str, bool] = {}  # item id → created by this request
    for section, item, prior in writes:
        cls, _ = SECTIONS[section]
        stored = cls()
        stored.CopyFrom(item)
        stored.ClearField("provenance")
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
            await session.execute(
                profile_items.insert().values(
                    dossier_pk=loaded.pk,
                    item_id=stored.item_id,
                    section=section,
                    sealed=sealed,
                    removed=False,
                    create_time=now,
                    update_time=now,
                )
            )
        else:
            await session.execute(
                update(profile_items)
                .where(profile_items.c.id == prior.id)
                .values(sealed=sealed, update_time=now)
            )
    for row in removals:
        await session.execute(
            update(profile_items)
            .where(profile_items.c.id == row.id)
            .values(removed=True, update_time=now)
        )
    await session.execute(
        update(dossiers)
        .where(dossiers.c.id == loaded.pk)
        .values(profile_revision=dossiers.c.profile_revision + 1, profile_update_time=now)
    )
    loaded.row = (await session.execute(select(dossiers).where(dossiers.c.id == loaded.pk))).one()
    full = await _read_profile(session, loaded, 0, settings, now)
    return answers.health_profile(caller, full, written)


# ---------------------------------------------------------------------------
# Vaccinations
# ---------------------------------------------------------------------------


def _date(value: Any, field: str, required: bool) -> date | None:
    if not (value.year or value.month or value.day):
        if required:
            raise invalid_argument("DATE_REQUIRED", "A date is required.", field)
        return None
    try:
        return date(value.year, value.month, value.day)
    except ValueError as exc:
        raise invalid_argument("INVALID_DATE", "The date is not valid.", field) from exc


def _dedup_key(caller: Caller, vac: Any, given: date) -> str:
    """Same vaccine, date and lot is one vaccination: ALREADY_EXISTS. That answer tells
    what the record holds, so it is given only about entries the caller may read back:
    the patient side (who reads every entry) is checked against the entries the patient
    side recorded and those recorded before this rule; anyone else only against the
    entries they recorded themself (their subject is in the key)."""
    parts = [vac.vaccine.code, vac.vaccine.display, given.isoformat(), vac.lot_number]
    if not answers.may_read_back(caller):
        parts.append(caller.subject)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


async def create_vaccination(
    session: AsyncSession, loaded: Loaded, request: Any, settings: RecordsSettings, now: datetime
) -> Any:
    caller = loaded.caller
    require_write(caller)
    vac = request.vaccination
    if not (vac.vaccine.code.strip() or vac.vaccine.display.strip()):
        raise invalid_argument(
            "VACCINE_REQUIRED", "The vaccine is required.", "vaccination.vaccine"
        )
    given = _date(vac.administration_date, "vaccination.administration_date", True)
    assert given is not None
    if given > now.date():
        raise invalid_argument(
            "ADMINISTRATION_DATE_IN_FUTURE",
            "The administration date is in the future.",
            "vaccination.administration_date",
        )
    booster = _date(vac.booster_date, "vaccination.booster_date", False)
    if booster is not None and booster <= given:
        raise invalid_argument(
            "BOOSTER_BEFORE_ADMINISTRATION",
            "The booster date must follow the administration.",
            "vaccination.booster_date",
        )
    dedup = _dedup_key(caller, vac, given)
    taken = (
        await session.execute(
            select(vaccinations.c.id).where(
                vaccinations.c.dossier_pk == loaded.pk, vaccinations.c.dedup_key == dedup
            )
        )
    ).first()
    if taken is not None:
        raise already_exists("VACCINATION_ALREADY_EXISTS", "This vaccination is already recorded.")
    vaccination_id = names.new_id()
    stored = R.Vaccination()
    stored.CopyFrom(vac)
    stored.name = names.vaccination_name(loaded.dossier_id, vaccination_id)
    author = caller_author(caller)
    if caller.role is Role.PROFESSIONAL:
        stored.professional.CopyFrom(author)
    elif not stored.HasField("professional"):
        stored.professional.CopyFrom(R.Author(kind=R.AUTHOR_KIND_PATIENT, display_name="Patient"))
    stored.ClearField("provenance")
    stored.provenance.author.CopyFrom(author)
    stored.provenance.create_time.FromDatetime(now)
    stored.provenance.last_updated_by.CopyFrom(author)
    stored.provenance.update_time.FromDatetime(now)
    dek = data_key(loaded.row, settings)
    await session.execute(
        vaccinations.insert().values(
            vaccination_id=vaccination_id,
            dossier_pk=loaded.pk,
            administration_date=given.isoformat(),
            dedup_key=dedup,
            sealed=crypto.seal(dek, stored.SerializeToString(deterministic=True), vaccination_id),
            create_time=now,
        )
    )
    return answers.vaccination(caller, stored)


async def list_vaccinations(
    session: AsyncSession, loaded: Loaded, request: Any, settings: RecordsSettings
) -> Any:
    require_read(loaded.caller)
    size = pagination.page_size(request.page_size, 50, 200)
    key = token_key(settings)
    fp = pagination.fingerprint(request.parent, loaded.caller.subject)
    v = vaccinations.c
    conds = [v.dossier_pk == loaded.pk]
    if request.page_token:
        pos = pagination.decode(key, request.page_token, fp)
        day, last = str(pos.get("d", "")), pos.get("i")
        if not isinstance(last, int):
            raise invalid_argument("INVALID_PAGE_TOKEN", "The page token is invalid.", "page_token")
        conds.append(
            or_(v.administration_date < day, and_(v.administration_date == day, v.id < last))
        )
    rows = (
        await session.execute(
            select(vaccinations)
            .where(*conds)
            .order_by(v.administration_date.desc(), v.id.desc())
            .limit(size + 1)
        )
    ).all()
    dek = data_key(loaded.row, settings)
    out = R.ListVaccinationsResponse()
    for row in rows[:size]:
        out.vaccinations.append(
            R.Vaccination.FromString(open_content(dek, row.sealed, row.vaccination_id))
        )
    if len(rows) > size:
        last_row = rows[size - 1]
        out.next_page_token = pagination.encode(
            key, fp, {"d": last_row.administration_date, "i": int(last_row.id)}
        )
    return out
