"""Record lifecycle: create (three channels), read, close, reactivate, terms of
use, retention purge and KEK rotation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import grpc
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.authz.v1 import principal_pb2
from dmp.records.v1 import events_pb2, records_pb2
from kit import ins as kit_ins
from kit.errors import (
    ServiceError,
    already_exists,
    failed_precondition,
    invalid_argument,
    permission_denied,
)
from kit.logs import get_logger
from services.records import crypto, names
from services.records.access import DESK_ROLE, Caller, Role, refuse_excluded
from services.records.models import (
    documents,
    dossiers,
    processed_requests,
    representatives,
)
from services.records.settings import RecordsSettings
from services.records.store import Loaded, emit, header, ts

log = get_logger(__name__)
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


def to_proto(loaded_row: Any, reps: list[Any], settings: RecordsSettings, now: datetime) -> Any:
    row = loaded_row
    out = R.Dossier(
        name=names.dossier_name(row.dossier_id),
        patient_ins=row.patient_ins,
        identity=R.PatientIdentity.FromString(row.identity),
        contact=R.ContactDetails.FromString(row.contact),
        minor=is_minor(row.birth_date, now),
        state=row.state,
        creation_channel=row.creation_channel,
        creator=row.creator,
        accepted_terms_version=row.accepted_terms_version,
        current_terms_version=settings.terms_version,
        close_reason=row.close_reason,
        close_comment=row.close_comment,
        etag=etag(row.revision),
    )
    for rep in reps:
        item = out.legal_representatives.add(
            representative_id=rep.representative_id,
            role=rep.role,
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


def creation_channel(request: R.CreateDossierRequest, principal: Any) -> int:
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


async def create(
    session: AsyncSession,
    request: R.CreateDossierRequest,
    principal: Any,
    settings: RecordsSettings,
    now: datetime,
    *,
    legacy: bool = False,
) -> tuple[Any, int]:
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
    rep_ins: list[str] = []
    for i, rep in enumerate(src.legal_representatives):
        field = f"dossier.legal_representatives[{i}]"
        if rep.role == R.REPRESENTATIVE_ROLE_UNSPECIFIED or not (
            rep.family_name.strip() and rep.given_name.strip()
        ):
            raise invalid_argument(
                "INVALID_REPRESENTATIVE", "A representative needs a role and a name.", field
            )
        rep_ins.append(kit_ins.validate(rep.ins, f"{field}.ins") if rep.ins else "")
    exists = (
        await session.execute(select(dossiers.c.id).where(dossiers.c.patient_ins == ins))
    ).first()
    if exists is not None:
        raise already_exists("DOSSIER_ALREADY_EXISTS", "This patient already has a record.")

    dossier_id = names.new_id()
    keks = settings.kek_bytes()
    wrapped = crypto.wrap(crypto.new_data_key(), dossier_id, settings.records_kek_id, keks)
    state = R.DOSSIER_STATE_TERMS_ACCEPTANCE_REQUIRED if legacy else R.DOSSIER_STATE_ACTIVE
    pk = (
        await session.execute(
            dossiers.insert()
            .returning(dossiers.c.id)
            .values(
                dossier_id=dossier_id,
                patient_ins=ins,
                identity=src.identity.SerializeToString(deterministic=True),
                contact=src.contact.SerializeToString(deterministic=True),
                birth_date=born.isoformat(),
                state=state,
                creation_channel=channel,
                creator=principal.subject,
                accepted_terms_version="" if legacy else settings.terms_version,
                terms_accept_time=None if legacy else now,
                create_time=now,
                update_time=now,
                close_reason=0,
                close_comment="",
                kek_id=wrapped.kek_id,
                wrapped_dek=wrapped.blob,
                revision=1,
                profile_revision=0,
            )
        )
    ).scalar_one()
    end = majority_time(born)
    for rep, rins in zip(src.legal_representatives, rep_ins, strict=True):
        await session.execute(
            representatives.insert().values(
                dossier_pk=pk,
                representative_id=names.new_id(),
                role=rep.role,
                family_name=rep.family_name.strip(),
                given_name=rep.given_name.strip(),
                ins=rins,
                contact=rep.contact.SerializeToString(deterministic=True),
                account_subject="",
                access_end_time=end,
            )
        )
    row = (await session.execute(select(dossiers).where(dossiers.c.id == pk))).one()
    reps = list(
        (
            await session.execute(
                select(representatives)
                .where(representatives.c.dossier_pk == pk)
                .order_by(representatives.c.id)
            )
        ).all()
    )
    event_id, head = header(principal.subject, now)
    await emit(
        session,
        "dmp.records.dossier.created",
        event_id,
        events_pb2.DossierCreated(
            header=head,
            dossier=names.dossier_name(dossier_id),
            patient_ins=ins,
            state=state,
            minor=minor,
            legal_representatives=[_rep_ref(r) for r in reps],
            creation_channel=R.CreationChannel.ValueType(channel),
        ),
    )
    return to_proto(row, reps, settings, now), pk


def _rep_ref(rep: Any) -> events_pb2.RepresentativeRef:
    ref = events_pb2.RepresentativeRef(representative_id=rep.representative_id, ins=rep.ins)
    ts(rep.access_end_time, ref.access_end_time)
    return ref


# ---------------------------------------------------------------------------
# State changes
# ---------------------------------------------------------------------------


async def _state_event(
    session: AsyncSession, verb: str, loaded: Loaded, state: int, now: datetime
) -> None:
    event_id, head = header(loaded.caller.subject, now)
    await emit(
        session,
        f"dmp.records.dossier.{verb}",
        event_id,
        events_pb2.DossierStateChanged(
            header=head,
            dossier=names.dossier_name(loaded.dossier_id),
            patient_ins=loaded.row.patient_ins,
            state=R.DossierState.ValueType(state),
        ),
    )


async def _reload(session: AsyncSession, loaded: Loaded) -> Any:
    return (await session.execute(select(dossiers).where(dossiers.c.id == loaded.pk))).one()


def _require_manager(caller: Caller) -> None:
    if caller.role not in (Role.PATIENT, Role.REPRESENTATIVE, Role.DESK):
        raise permission_denied(
            "NOT_RECORD_MANAGER", "Only the patient, a representative or a CPAM desk may do this."
        )


async def close(
    session: AsyncSession,
    loaded: Loaded,
    request: R.CloseDossierRequest,
    settings: RecordsSettings,
    now: datetime,
) -> Any:
    _require_manager(loaded.caller)
    check_etag(request.etag, loaded.row.revision)
    if request.reason == R.CLOSE_REASON_UNSPECIFIED or request.reason not in (
        R.CloseReason.values()
    ):
        raise invalid_argument("CLOSE_REASON_REQUIRED", "A closing reason is required.", "reason")
    if request.reason == R.CLOSE_REASON_OTHER and not request.comment.strip():
        raise invalid_argument(
            "CLOSE_REASON_REQUIRED", "A comment is required with reason OTHER.", "comment"
        )
    if loaded.row.state == R.DOSSIER_STATE_CLOSED:
        raise failed_precondition("DOSSIER_ALREADY_CLOSED", "The record is already closed.")
    await session.execute(
        update(dossiers)
        .where(dossiers.c.id == loaded.pk)
        .values(
            state=R.DOSSIER_STATE_CLOSED,
            close_time=now,
            close_reason=request.reason,
            close_comment=request.comment.strip()[:1000],
            update_time=now,
            revision=dossiers.c.revision + 1,
        )
    )
    await _state_event(session, "closed", loaded, R.DOSSIER_STATE_CLOSED, now)
    return to_proto(await _reload(session, loaded), loaded.reps, settings, now)


async def reactivate(
    session: AsyncSession,
    loaded: Loaded,
    request: R.ReactivateDossierRequest,
    settings: RecordsSettings,
    now: datetime,
) -> Any:
    caller = loaded.caller
    _require_manager(caller)
    if caller.role is Role.DESK:
        _check_consent(request.consent)
    check_etag(request.etag, loaded.row.revision)
    if loaded.row.state != R.DOSSIER_STATE_CLOSED:
        raise failed_precondition("DOSSIER_NOT_CLOSED", "The record is not closed.")
    if loaded.row.close_reason == R.CLOSE_REASON_DECEASED:
        raise failed_precondition(
            "PATIENT_DECEASED", "The record of a deceased patient stays closed."
        )
    await session.execute(
        update(dossiers)
        .where(dossiers.c.id == loaded.pk)
        .values(
            state=R.DOSSIER_STATE_ACTIVE,
            close_time=None,
            close_reason=0,
            close_comment="",
            update_time=now,
            revision=dossiers.c.revision + 1,
        )
    )
    await _state_event(session, "reactivated", loaded, R.DOSSIER_STATE_ACTIVE, now)
    return to_proto(await _reload(session, loaded), loaded.reps, settings, now)


async def accept_terms(
    session: AsyncSession,
    loaded: Loaded,
    request: R.AcceptTermsOfUseRequest,
    settings: RecordsSettings,
    now: datetime,
) -> Any:
    if not loaded.caller.acts_for_patient:
        raise permission_denied(
            "NOT_RECORD_MANAGER", "Only the patient or a representative accepts the terms."
        )
    if request.terms_version != settings.terms_version:
        raise failed_precondition(
            "TERMS_VERSION_NOT_CURRENT", "Only the current terms of use can be accepted."
        )
    state = loaded.row.state
    new_state = (
        R.DOSSIER_STATE_ACTIVE if state == R.DOSSIER_STATE_TERMS_ACCEPTANCE_REQUIRED else state
    )
    await session.execute(
        update(dossiers)
        .where(dossiers.c.id == loaded.pk)
        .values(
            state=new_state,
            accepted_terms_version=request.terms_version,
            terms_accept_time=now,
            update_time=now,
            revision=dossiers.c.revision + 1,
        )
    )
    await _state_event(session, "terms_accepted", loaded, new_state, now)
    return to_proto(await _reload(session, loaded), loaded.reps, settings, now)


# ---------------------------------------------------------------------------
# Operator tasks: retention purge and KEK rotation
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Purged:
    dossier: str
    close_time: datetime
    documents: int


async def purge_expired(
    sessions: async_sessionmaker[AsyncSession],
    settings: RecordsSettings,
    now: datetime,
    *,
    dry_run: bool = False,
    limit: int = 1000,
) -> list[Purged]:
    """Delete records closed more than `retention_years` ago (rule: 10-year retention).

    One transaction per record, so a failure leaves every record whole.
    """
    from services.records import search

    years = settings.retention_years
    async with sessions() as session:
        candidates = (
            await session.execute(
                select(dossiers.c.id, dossiers.c.dossier_id, dossiers.c.close_time)
                .where(dossiers.c.state == R.DOSSIER_STATE_CLOSED)
                .where(dossiers.c.close_time <= add_years(now, -years))
                .order_by(dossiers.c.close_time, dossiers.c.id)
                .limit(limit)
            )
        ).all()
    out: list[Purged] = []
    for cand in candidates:
        async with sessions() as session, session.begin():
            row = (
                await session.execute(
                    select(dossiers).where(dossiers.c.id == cand.id).with_for_update()
                )
            ).one_or_none()
            if row is None or row.state != R.DOSSIER_STATE_CLOSED:
                continue
            if row.close_time > add_years(now, -years):
                continue
            count = int(
                (
                    await session.execute(
                        select(func.count()).where(documents.c.dossier_pk == row.id)
                    )
                ).scalar_one()
            )
            if not dry_run:
                await search.forget_dossier(session, row, settings)
                await session.execute(
                    delete(processed_requests).where(processed_requests.c.dossier_pk == row.id)
                )
                await session.execute(delete(dossiers).where(dossiers.c.id == row.id))
            out.append(Purged(names.dossier_name(row.dossier_id), row.close_time, count))
            log.info("dossier_purged", dossier=row.dossier_id, documents=count, dry_run=dry_run)
    return out


async def rotate_keys(
    sessions: async_sessionmaker[AsyncSession], settings: RecordsSettings, batch: int = 500
) -> int:
    """Re-wrap every data key not wrapped by the current KEK; returns how many."""
    keks = settings.kek_bytes()
    current = settings.records_kek_id
    done = 0
    while True:
        async with sessions() as session, session.begin():
            rows = (
                await session.execute(
                    select(
                        dossiers.c.id,
                        dossiers.c.dossier_id,
                        dossiers.c.kek_id,
                        dossiers.c.wrapped_dek,
                    )
                    .where(dossiers.c.kek_id != current)
                    .order_by(dossiers.c.id)
                    .limit(batch)
                    .with_for_update()
                )
            ).all()
            if not rows:
                return done
            for row in rows:
                new = crypto.rewrap(
                    crypto.WrappedKey(row.kek_id, row.wrapped_dek), row.dossier_id, keks, current
                )
                await session.execute(
                    update(dossiers)
                    .where(dossiers.c.id == row.id)
                    .values(kek_id=new.kek_id, wrapped_dek=new.blob)
                )
            done += len(rows)
