"""Record lifecycle: create (three channels), read, close, reactivate, terms of use.

The operator tasks on records (retention purge, KEK rotation) are `operations.py`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import grpc
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.authz.v1 import principal_pb2
from dmp.records.v1 import records_pb2
from kit import ins as kit_ins
from kit import structures
from kit.errors import (
    ServiceError,
    already_exists,
    failed_precondition,
    invalid_argument,
    permission_denied,
)
from services.records import crypto, names, published
from services.records.access import DESK_ROLE, Caller, RecordContext, Role, refuse_excluded
from services.records.repository import dossiers
from services.records.repository.rows import DossierRow, RepresentativeRow
from services.records.settings import RecordsSettings
from services.records.timestamps import ts

R = records_pb2
P = principal_pb2
MAJORITY_YEARS = 18


# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------


def add_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)


def birth_date_of(identity: R.PatientIdentity) -> date:
    d = identity.birth_date
    try:
        born = date(d.year, d.month, d.day)
    except ValueError as exc:
        raise invalid_argument(
            "IDENTITY_REQUIRED", "A full birth date is required.", "dossier.identity.birth_date"
        ) from exc
    return born


def majority_time(born: date) -> datetime:
    start = datetime(born.year, born.month, born.day, tzinfo=UTC)
    return add_years(start, MAJORITY_YEARS)


def is_minor(birth_date: str | None, now: datetime) -> bool:
    if not birth_date:
        return False
    return majority_time(date.fromisoformat(birth_date)) > now


# ---------------------------------------------------------------------------
# Proto conversion
# ---------------------------------------------------------------------------


def etag(revision: int) -> str:
    return f'W/"{revision}"'


def to_proto(
    row: DossierRow, reps: list[RepresentativeRow], settings: RecordsSettings, now: datetime
) -> R.Dossier:
    out = R.Dossier(
        name=names.dossier_name(row.dossier_id),
        patient_ins=row.patient_ins,
        identity=R.PatientIdentity.FromString(row.identity),
        contact=R.ContactDetails.FromString(row.contact),
        minor=is_minor(row.birth_date, now),
        state=R.DossierState.ValueType(row.state),
        creation_channel=R.CreationChannel.ValueType(row.creation_channel),
        creator=row.creator,
        accepted_terms_version=row.accepted_terms_version,
        current_terms_version=settings.terms_version,
        close_reason=R.CloseReason.ValueType(row.close_reason),
        close_comment=row.close_comment,
        etag=etag(row.revision),
    )
    for rep in reps:
        item = out.legal_representatives.add(
            representative_id=rep.representative_id,
            role=R.RepresentativeRole.ValueType(rep.role),
            family_name=rep.family_name,
            given_name=rep.given_name,
            ins=rep.ins,
            contact=R.ContactDetails.FromString(rep.contact),
            account_subject=rep.account_subject,
        )
        ts(rep.access_end_time, item.access_end_time)
    ts(row.terms_accept_time, out.terms_accept_time)
    ts(row.create_time, out.create_time)
    ts(row.update_time, out.update_time)
    ts(row.close_time, out.close_time)
    if row.close_time is not None:
        ts(add_years(row.close_time, settings.retention_years), out.purge_time)
    return out


def check_etag(given: str, revision: int) -> None:
    if given and given != etag(revision):
        raise ServiceError(grpc.StatusCode.ABORTED, "ETAG_MISMATCH", "The record changed.")


# ---------------------------------------------------------------------------
# Create
# ---------------------------------------------------------------------------


def _check_identity(identity: R.PatientIdentity) -> None:
    if not identity.birth_family_name.strip() or not [
        n for n in identity.birth_given_names if n.strip()
    ]:
        raise invalid_argument(
            "IDENTITY_REQUIRED",
            "Birth family name and given names are required.",
            "dossier.identity",
        )
    if identity.sex == R.SEX_UNSPECIFIED:
        raise invalid_argument("IDENTITY_REQUIRED", "Sex is required.", "dossier.identity.sex")


def _check_consent(consent: R.ConsentAttestation) -> None:
    if not (consent.consent_obtained and consent.information_given):
        raise invalid_argument(
            "CONSENT_NOT_ATTESTED",
            "The patient's informed consent must be attested.",
            "consent",
        )


def creation_channel(request: R.CreateDossierRequest, principal: P.Principal) -> int:
    """The channel, checked against the caller's kind (patient/desk/professional)."""
    refuse_excluded(principal)
    which = request.WhichOneof("channel")
    kind = principal.kind
    if which == "online" and kind == P.PRINCIPAL_KIND_PATIENT:
        return int(R.CREATION_CHANNEL_ONLINE)
    if which == "desk" and kind == P.PRINCIPAL_KIND_STAFF and DESK_ROLE in principal.roles:
        _check_consent(request.desk.consent)
        return int(R.CREATION_CHANNEL_CPAM_DESK)
    if which == "professional" and kind == P.PRINCIPAL_KIND_PROFESSIONAL:
        _check_consent(request.professional.consent)
        return int(R.CREATION_CHANNEL_PROFESSIONAL)
    if kind not in (P.PRINCIPAL_KIND_PATIENT, P.PRINCIPAL_KIND_PROFESSIONAL) and not (
        kind == P.PRINCIPAL_KIND_STAFF and DESK_ROLE in principal.roles
    ):
        raise permission_denied(
            "PRINCIPAL_KIND_NOT_ALLOWED", "This caller may not create a record."
        )
    raise failed_precondition(
        "CHANNEL_NOT_ALLOWED", "The creation channel does not match the caller."
    )


def _representative_ins(src: R.Dossier) -> list[str]:
    """Each representative's INS ("" if none), after checking role and name."""
    out: list[str] = []
    for i, rep in enumerate(src.legal_representatives):
        field = f"dossier.legal_representatives[{i}]"
        if rep.role == R.REPRESENTATIVE_ROLE_UNSPECIFIED or not (
            rep.family_name.strip() and rep.given_name.strip()
        ):
            raise invalid_argument(
                "INVALID_REPRESENTATIVE", "A representative needs a role and a name.", field
            )
        out.append(kit_ins.validate(rep.ins, f"{field}.ins") if rep.ins else "")
    return out


async def create(
    session: AsyncSession,
    request: R.CreateDossierRequest,
    principal: P.Principal,
    settings: RecordsSettings,
    now: datetime,
    *,
    legacy: bool = False,
) -> tuple[R.Dossier, int]:
    """Insert the record; returns (Dossier, pk). Every check runs before any write."""
    src = request.dossier
    ins = kit_ins.validate(src.patient_ins, "dossier.patient_ins")
    channel = int(R.CREATION_CHANNEL_LEGACY) if legacy else creation_channel(request, principal)
    if channel == R.CREATION_CHANNEL_ONLINE and principal.patient_ins != ins:
        raise permission_denied("NOT_OWN_RECORD", "A patient creates their own record only.")
    _check_identity(src.identity)
    born = birth_date_of(src.identity)
    if datetime(born.year, born.month, born.day, tzinfo=UTC) > now:
        raise invalid_argument(
            "IDENTITY_REQUIRED", "The birth date is in the future.", "dossier.identity.birth_date"
        )
    minor = majority_time(born) > now
    if minor and channel == R.CREATION_CHANNEL_ONLINE:
        raise failed_precondition(
            "MINOR_REQUIRES_ASSISTED_CREATION",
            "A minor's record is created at a CPAM desk or by a professional.",
        )
    if minor and not src.legal_representatives:
        raise invalid_argument(
            "LEGAL_REPRESENTATIVE_REQUIRED",
            "A minor's record needs at least one legal representative.",
            "dossier.legal_representatives",
        )
    rep_ins = _representative_ins(src)
    institution = ""
    if channel == R.CREATION_CHANNEL_PROFESSIONAL:
        if principal.HasField("establishment") and principal.establishment.finess:
            # Through an establishment's system: the FINESS the gateway verified wins.
            institution = principal.establishment.finess
        elif request.professional.institution_id:
            institution = structures.validate_institution(
                request.professional.institution_id, "professional.institution_id"
            )
    if await dossiers.ins_taken(session, ins):
        raise already_exists("DOSSIER_ALREADY_EXISTS", "This patient already has a record.")

    dossier_id = names.new_id()
    keks = settings.kek_bytes()
    state = R.DOSSIER_STATE_TERMS_ACCEPTANCE_REQUIRED if legacy else R.DOSSIER_STATE_ACTIVE
    pk = await dossiers.insert(
        session,
        dossier_id=dossier_id,
        patient_ins=ins,
        identity=src.identity.SerializeToString(deterministic=True),
        contact=src.contact.SerializeToString(deterministic=True),
        birth_date=born.isoformat(),
        state=state,
        channel=channel,
        creator=principal.subject,
        terms_version="" if legacy else settings.terms_version,
        terms_accept_time=None if legacy else now,
        key=crypto.wrap(crypto.new_data_key(), dossier_id, settings.records_kek_id, keks),
        now=now,
        institution=institution,
    )
    end = majority_time(born)
    for rep, rins in zip(src.legal_representatives, rep_ins, strict=True):
        await dossiers.insert_representative(
            session,
            dossier_pk=pk,
            representative_id=names.new_id(),
            role=rep.role,
            family_name=rep.family_name.strip(),
            given_name=rep.given_name.strip(),
            ins=rins,
            contact=rep.contact.SerializeToString(deterministic=True),
            access_end_time=end,
        )
    row = await dossiers.reload(session, pk)
    reps = await dossiers.representatives_of(session, pk)
    await published.dossier_created(
        session,
        actor=principal.subject,
        now=now,
        dossier_id=dossier_id,
        patient_ins=ins,
        state=state,
        minor=minor,
        reps=reps,
        channel=channel,
        contact=src.contact,
        creating_professional=(
            published.creating_professional(principal, institution)
            if channel == R.CREATION_CHANNEL_PROFESSIONAL
            else None
        ),
        oppositions=(
            request.emergency_oppositions if request.HasField("emergency_oppositions") else None
        ),
    )
    return to_proto(row, reps, settings, now), pk


# ---------------------------------------------------------------------------
# State changes
# ---------------------------------------------------------------------------


async def _changed(
    session: AsyncSession,
    verb: str,
    record: RecordContext,
    settings: RecordsSettings,
    now: datetime,
    **values: object,
) -> R.Dossier:
    """Write the change, publish `dmp.records.dossier.{verb}`, answer the record as now stored."""
    await dossiers.change(session, record.pk, **values, update_time=now)
    row = await dossiers.reload(session, record.pk)
    await published.dossier_state_changed(
        session,
        verb,
        actor=record.caller.subject,
        now=now,
        dossier_id=record.dossier_id,
        patient_ins=row.patient_ins,
        state=row.state,
    )
    return to_proto(row, record.reps, settings, now)


def _require_manager(caller: Caller) -> None:
    if caller.role not in (Role.PATIENT, Role.REPRESENTATIVE, Role.DESK):
        raise permission_denied(
            "NOT_RECORD_MANAGER", "Only the patient, a representative or a CPAM desk may do this."
        )


async def close(
    session: AsyncSession,
    record: RecordContext,
    request: R.CloseDossierRequest,
    settings: RecordsSettings,
    now: datetime,
) -> R.Dossier:
    _require_manager(record.caller)
    check_etag(request.etag, record.row.revision)
    if request.reason == R.CLOSE_REASON_UNSPECIFIED or request.reason not in (
        R.CloseReason.values()
    ):
        raise invalid_argument("CLOSE_REASON_REQUIRED", "A closing reason is required.", "reason")
    if request.reason == R.CLOSE_REASON_OTHER and not request.comment.strip():
        raise invalid_argument(
            "CLOSE_REASON_REQUIRED", "A comment is required with reason OTHER.", "comment"
        )
    if record.row.state == R.DOSSIER_STATE_CLOSED:
        raise failed_precondition("DOSSIER_ALREADY_CLOSED", "The record is already closed.")
    return await _changed(
        session,
        "closed",
        record,
        settings,
        now,
        state=R.DOSSIER_STATE_CLOSED,
        close_time=now,
        close_reason=request.reason,
        close_comment=request.comment.strip()[:1000],
    )


async def reactivate(
    session: AsyncSession,
    record: RecordContext,
    request: R.ReactivateDossierRequest,
    settings: RecordsSettings,
    now: datetime,
) -> R.Dossier:
    caller = record.caller
    _require_manager(caller)
    if caller.role is Role.DESK:
        _check_consent(request.consent)
    check_etag(request.etag, record.row.revision)
    if record.row.state != R.DOSSIER_STATE_CLOSED:
        raise failed_precondition("DOSSIER_NOT_CLOSED", "The record is not closed.")
    if record.row.close_reason == R.CLOSE_REASON_DECEASED:
        raise failed_precondition(
            "PATIENT_DECEASED", "The record of a deceased patient stays closed."
        )
    return await _changed(
        session,
        "reactivated",
        record,
        settings,
        now,
        state=R.DOSSIER_STATE_ACTIVE,
        close_time=None,
        close_reason=0,
        close_comment="",
    )


async def accept_terms(
    session: AsyncSession,
    record: RecordContext,
    request: R.AcceptTermsOfUseRequest,
    settings: RecordsSettings,
    now: datetime,
) -> R.Dossier:
    if not record.caller.acts_for_patient:
        raise permission_denied(
            "NOT_RECORD_MANAGER", "Only the patient or a representative accepts the terms."
        )
    if request.terms_version != settings.terms_version:
        raise failed_precondition(
            "TERMS_VERSION_NOT_CURRENT", "Only the current terms of use can be accepted."
        )
    state = record.row.state
    new_state = (
        R.DOSSIER_STATE_ACTIVE if state == R.DOSSIER_STATE_TERMS_ACCEPTANCE_REQUIRED else state
    )
    return await _changed(
        session,
        "terms_accepted",
        record,
        settings,
        now,
        state=new_state,
        accepted_terms_version=request.terms_version,
        terms_accept_time=now,
    )
