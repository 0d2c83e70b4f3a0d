"""Vaccinations: record one, list them (newest administration first).

Each entry is sealed with the record's data key, bound to its id; the server
stamps provenance and, for a professional, the vaccinating professional.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dmp.authz.v1 import principal_pb2
from dmp.records.v1 import records_pb2
from kit import pagination
from kit.errors import already_exists, invalid_argument, not_found, permission_denied
from services.records import answers, crypto, names, published
from services.records.access import Caller, RecordContext, Role
from services.records.keys import data_key, open_content
from services.records.profile import caller_author, require_read, require_write
from services.records.repository import dossiers, health
from services.records.settings import RecordsSettings

R = records_pb2
MAX_PROBES = 200


def _date(value: R.Date, field: str, *, required: bool) -> date | None:
    if not (value.year or value.month or value.day):
        if required:
            raise invalid_argument("DATE_REQUIRED", "A date is required.", field)
        return None
    try:
        return date(value.year, value.month, value.day)
    except ValueError as exc:
        raise invalid_argument("INVALID_DATE", "The date is not valid.", field) from exc


def _dedup_key(caller: Caller, vac: R.Vaccination, given: date) -> str:
    """Same vaccine, date and lot is one vaccination: ALREADY_EXISTS. That answer tells
    what the record holds, so it is given only about entries the caller may read back:
    the patient side (who reads every entry) is checked against the entries the patient
    side recorded and those recorded before this rule; anyone else only against the
    entries they recorded themself (their subject is in the key)."""
    parts = [vac.vaccine.code, vac.vaccine.display, given.isoformat(), vac.lot_number]
    if not answers.may_read_back(caller):
        parts.append(caller.subject)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _checked_dates(vac: R.Vaccination, now: datetime) -> date:
    """The administration date, after the vaccine and both dates are checked."""
    if not (vac.vaccine.code.strip() or vac.vaccine.display.strip()):
        raise invalid_argument(
            "VACCINE_REQUIRED", "The vaccine is required.", "vaccination.vaccine"
        )
    given = _date(vac.administration_date, "vaccination.administration_date", required=True)
    assert given is not None
    if given > now.date():
        raise invalid_argument(
            "ADMINISTRATION_DATE_IN_FUTURE",
            "The administration date is in the future.",
            "vaccination.administration_date",
        )
    booster = _date(vac.booster_date, "vaccination.booster_date", required=False)
    if booster is not None and booster <= given:
        raise invalid_argument(
            "BOOSTER_BEFORE_ADMINISTRATION",
            "The booster date must follow the administration.",
            "vaccination.booster_date",
        )
    return given


async def create_vaccination(
    session: AsyncSession,
    record: RecordContext,
    request: R.CreateVaccinationRequest,
    settings: RecordsSettings,
    now: datetime,
) -> R.Vaccination:
    caller = record.caller
    require_write(caller)
    vac = request.vaccination
    given = _checked_dates(vac, now)
    dedup = _dedup_key(caller, vac, given)
    if await health.vaccination_exists(session, record.pk, dedup):
        raise already_exists("VACCINATION_ALREADY_EXISTS", "This vaccination is already recorded.")
    vaccination_id = names.new_id()
    stored = R.Vaccination()
    stored.CopyFrom(vac)
    stored.name = names.vaccination_name(record.dossier_id, vaccination_id)
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
    dek = data_key(record.row, settings)
    fulfils = await _boosters_awaited(session, record, vac, given, dek)
    await health.add_vaccination(
        session,
        vaccination_id=vaccination_id,
        dossier_pk=record.pk,
        administration_date=given.isoformat(),
        dedup_key=dedup,
        sealed=crypto.seal(dek, stored.SerializeToString(deterministic=True), vaccination_id),
        now=now,
    )
    await published.vaccination_recorded(
        session,
        actor=caller.subject,
        now=now,
        dossier_id=record.dossier_id,
        vaccination_id=vaccination_id,
        booster_date=vac.booster_date if _has_booster(vac) else None,
        fulfils=fulfils,
    )
    return answers.vaccination(caller, stored)


def _has_booster(vac: R.Vaccination) -> bool:
    day = vac.booster_date
    return bool(day.year or day.month or day.day)


def _same_vaccine(a: R.CodedConcept, b: R.CodedConcept) -> bool:
    """Same code when both have one, else the same name (case and spaces aside)."""
    if a.code.strip() and b.code.strip():
        return a.code.strip() == b.code.strip()
    return bool(a.display.strip()) and a.display.strip().casefold() == b.display.strip().casefold()


async def _boosters_awaited(
    session: AsyncSession, record: RecordContext, vac: R.Vaccination, given: date, dek: bytes
) -> list[str]:
    """Ids of the earlier vaccinations of the same vaccine, given before `given`, that
    announced a booster: this vaccination is their booster, so their reminders are moot.
    Found here, where the vaccines can be read, so the event need not name any."""
    found = []
    for row in await health.vaccinations_before(session, record.pk, given.isoformat()):
        earlier = R.Vaccination.FromString(open_content(dek, row.sealed, row.vaccination_id))
        if _has_booster(earlier) and _same_vaccine(earlier.vaccine, vac.vaccine):
            found.append(row.vaccination_id)
    return found


async def list_vaccinations(
    session: AsyncSession,
    record: RecordContext,
    request: R.ListVaccinationsRequest,
    tokens: pagination.PageTokens,
    settings: RecordsSettings,
) -> R.ListVaccinationsResponse:
    require_read(record.caller)
    size = pagination.page_size(request.page_size, 50, 200)
    bound = pagination.request_fingerprint(request, record.caller.subject)
    position = tokens.read(request.page_token, bound)
    after = (position.text("d"), position.integer("i")) if position is not None else None
    rows = await health.vaccinations_page(session, record.pk, after, size + 1)
    dek = data_key(record.row, settings)
    out = R.ListVaccinationsResponse()
    for row in rows[:size]:
        out.vaccinations.append(
            R.Vaccination.FromString(open_content(dek, row.sealed, row.vaccination_id))
        )
    if len(rows) > size:
        last_row = rows[size - 1]
        out.next_page_token = tokens.issue(
            {"d": last_row.administration_date, "i": last_row.id}, bound
        )
    return out


def _probe_day(probe: R.VaccinationProbe) -> str:
    """The probe's ISO date, "" when it is not a full valid date (it then matches nothing)."""
    d = probe.administration_date
    try:
        return date(d.year, d.month, d.day).isoformat()
    except ValueError:
        return ""


async def resolve_vaccinations(
    session: AsyncSession,
    principal: principal_pb2.Principal,
    dossier_id: str,
    request: R.ResolveVaccinationsRequest,
    settings: RecordsSettings,
) -> R.ResolveVaccinationsResponse:
    """For each probe, the name of the first-recorded entry with one of its vaccine codes
    given on its date, or "". Internal: history_feed links the insurer's vaccine lines to
    the book; only names leave, nothing of the entries."""
    if principal.kind != principal_pb2.PRINCIPAL_KIND_INTERNAL:
        raise permission_denied("INTERNAL_METHOD", "This method is internal to the platform.")
    if len(request.probes) > MAX_PROBES:
        raise invalid_argument(
            "TOO_MANY_PROBES", f"At most {MAX_PROBES} probes per call.", "probes"
        )
    row = await dossiers.find(session, dossier_id=dossier_id)
    if row is None:
        raise not_found("NOT_FOUND", "Record not found.")
    days = [_probe_day(p) for p in request.probes]
    entries = await health.vaccinations_given_on(session, row.id, sorted({d for d in days if d}))
    dek = data_key(row, settings) if entries else b""
    book: dict[
        str, list[tuple[str, str]]
    ] = {}  # day → [(vaccine code, name)], first recorded first
    for entry in entries:
        vac = R.Vaccination.FromString(open_content(dek, entry.sealed, entry.vaccination_id))
        code = vac.vaccine.code.strip().upper()
        if code:
            book.setdefault(entry.administration_date, []).append((code, vac.name))
    out = R.ResolveVaccinationsResponse()
    for probe, day in zip(request.probes, days, strict=True):
        wanted = {c.strip().upper() for c in probe.vaccine_codes if c.strip()}
        out.vaccinations.append(
            next((name for code, name in book.get(day, []) if code in wanted), "")
        )
    return out
