"""The events records publishes (payloads in dmp/records/v1/events.proto).

Ids and states only, never medical content. Each is queued in the caller's
transaction through the outbox and published after commit by the relay.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dmp.authz.v1 import principal_pb2
from dmp.records.v1 import events_pb2, records_pb2
from kit.outbox import add_event, new_event_id
from services.records import names
from services.records.models import outbox
from services.records.repository.rows import RepresentativeRow
from services.records.timestamps import ts

R = records_pb2
DOSSIER = "dmp.records.dossier."
DOCUMENT = "dmp.records.document."
ADVANCE_DIRECTIVES_CHANGED = "dmp.records.advance_directives.changed"
VACCINATION_RECORDED = "dmp.records.vaccination.recorded"


def _header(actor: str, now: datetime) -> events_pb2.EventHeader:
    head = events_pb2.EventHeader(event_id=new_event_id(), actor=actor)
    head.occur_time.FromDatetime(now)
    return head


def _rep_ref(rep: RepresentativeRow, *, contact: bool = False) -> events_pb2.RepresentativeRef:
    ref = events_pb2.RepresentativeRef(representative_id=rep.representative_id, ins=rep.ins)
    ts(rep.access_end_time, ref.access_end_time)
    if contact:
        given = R.ContactDetails.FromString(rep.contact)
        ref.contact_email = given.email.strip()
        ref.contact_mobile_phone = given.mobile_phone.strip()
    return ref


async def dossier_created(
    session: AsyncSession,
    *,
    actor: str,
    now: datetime,
    dossier_id: str,
    patient_ins: str,
    state: int,
    minor: bool,
    reps: list[RepresentativeRow],
    channel: int,
    contact: R.ContactDetails | None = None,
    creating_professional: events_pb2.CreatingProfessional | None = None,
    oppositions: records_pb2.EmergencyOppositions | None = None,
) -> None:
    """`dmp.records.dossier.created`, with the e-mail and phone given at creation (for notify)."""
    head = _header(actor, now)
    given = contact or R.ContactDetails()
    await add_event(
        session,
        outbox,
        DOSSIER + "created",
        events_pb2.DossierCreated(
            header=head,
            dossier=names.dossier_name(dossier_id),
            patient_ins=patient_ins,
            state=R.DossierState.ValueType(state),
            minor=minor,
            legal_representatives=[_rep_ref(r, contact=True) for r in reps],
            creation_channel=R.CreationChannel.ValueType(channel),
            contact_email=given.email.strip(),
            contact_mobile_phone=given.mobile_phone.strip(),
            creating_professional=creating_professional,
            emergency_oppositions=oppositions,
        ),
        event_id=head.event_id,
    )


def creating_professional(
    principal: principal_pb2.Principal, institution: str
) -> events_pb2.CreatingProfessional:
    """Who created a record as a professional: consent grants them access by that act."""
    return events_pb2.CreatingProfessional(
        rpps=principal.rpps or principal.subject,
        profession_code=principal.profession_code,
        specialty_code=principal.specialty_code,
        institution_id=institution,
    )


async def dossier_state_changed(
    session: AsyncSession,
    verb: str,
    *,
    actor: str,
    now: datetime,
    dossier_id: str,
    patient_ins: str,
    state: int,
) -> None:
    """`dmp.records.dossier.{closed,reactivated,terms_accepted}`."""
    head = _header(actor, now)
    await add_event(
        session,
        outbox,
        DOSSIER + verb,
        events_pb2.DossierStateChanged(
            header=head,
            dossier=names.dossier_name(dossier_id),
            patient_ins=patient_ins,
            state=R.DossierState.ValueType(state),
        ),
        event_id=head.event_id,
    )


async def document_changed(
    session: AsyncSession,
    verb: str,
    *,
    actor: str,
    now: datetime,
    dossier_id: str,
    document_id: str,
    class_code: str,
    invisible_to_patient: bool,
    replaces: str = "",
) -> None:
    """`dmp.records.document.{added,replaced,deleted,visibility_changed}`."""
    head = _header(actor, now)
    await add_event(
        session,
        outbox,
        DOCUMENT + verb,
        events_pb2.DocumentChanged(
            header=head,
            dossier=names.dossier_name(dossier_id),
            document=names.document_name(dossier_id, document_id),
            class_code=class_code,
            replaces=replaces,
            invisible_to_patient=invisible_to_patient,
        ),
        event_id=head.event_id,
    )


async def advance_directives_changed(
    session: AsyncSession,
    *,
    actor: str,
    now: datetime,
    dossier_id: str,
    revision_id: str,
    author_kind: int,
) -> None:
    """`dmp.records.advance_directives.changed`: a new revision (no content)."""
    head = _header(actor, now)
    await add_event(
        session,
        outbox,
        ADVANCE_DIRECTIVES_CHANGED,
        events_pb2.AdvanceDirectivesChanged(
            header=head,
            dossier=names.dossier_name(dossier_id),
            revision_id=revision_id,
            author_kind=R.AuthorKind.ValueType(author_kind),
        ),
        event_id=head.event_id,
    )


async def vaccination_recorded(
    session: AsyncSession,
    *,
    actor: str,
    now: datetime,
    dossier_id: str,
    vaccination_id: str,
    booster_date: R.Date | None,
    fulfils: list[str],
) -> None:
    """`dmp.records.vaccination.recorded`: names no vaccine, only the booster's date and the
    earlier vaccinations whose booster this one is."""
    head = _header(actor, now)
    event = events_pb2.VaccinationRecorded(
        header=head,
        dossier=names.dossier_name(dossier_id),
        vaccination=names.vaccination_name(dossier_id, vaccination_id),
        fulfils=[names.vaccination_name(dossier_id, v) for v in fulfils],
    )
    if booster_date is not None:
        event.booster_date.CopyFrom(booster_date)
    await add_event(session, outbox, VACCINATION_RECORDED, event, event_id=head.event_id)
