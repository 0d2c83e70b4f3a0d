"""What a record's creation gives: the creator keeps access, the oppositions asked at creation.

Applied when consent consumes `dmp.records.dossier.created` (before the projection of the
record commits, so a failure is redelivered and retried; every step is idempotent):
- a professional who created the record with the patient's consent gets a grant by that
  act (GrantDetails.source RECORD_CREATION): logged in the record's access log as the
  CreateDossier decision (request id = the event id, so a redelivery logs nothing twice),
  announced like a care-context grant (`dmp.consent.changed` by someone other than the
  patient, and the professional's first access), revocable by the patient like any grant;
- the emergency oppositions the patient expressed to the professional or the desk become
  the record's emergency preferences (the patient's own choice: no notification).
"""

from __future__ import annotations

import uuid

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import consent_pb2
from dmp.records.v1 import events_pb2 as records_events
from dmp.records.v1 import records_pb2
from kit.db import utcnow
from kit.directory import ProfessionalNotFoundError
from kit.logs import get_logger
from services.consent import authorizing, published, repository, rules
from services.consent.decision import NORMAL, OB_AUDIT, OB_FIRST, OK, Decision, Request
from services.consent.log_writer import LogAppender
from services.consent.runtime import Runtime

A = authz_pb2
C = consent_pb2
P = principal_pb2
log = get_logger(__name__)

CREATE_DOSSIER = "/dmp.records.v1.RecordsService/CreateDossier"
RECORD_CREATOR = "RECORD_CREATOR"
_RULE_IDS = uuid.UUID("5b0f3d6e-8f62-4c1e-9d7a-0c2d1e6f4a10")


def creator_rule_id(dossier: str) -> str:
    """The creator's grant has one id per record: a redelivered event finds it."""
    return uuid.uuid5(_RULE_IDS, dossier).hex


async def apply(rt: Runtime, event: records_events.DossierCreated) -> None:
    if event.HasField("emergency_oppositions"):
        opposed = event.emergency_oppositions
        if opposed.oppose_bris_de_glace or opposed.oppose_centre_15:
            await _oppositions(rt, event)
    creator = event.creating_professional
    if event.creation_channel == records_pb2.CREATION_CHANNEL_PROFESSIONAL and creator.rpps:
        await _creator_grant(rt, event)


async def _oppositions(rt: Runtime, event: records_events.DossierCreated) -> None:
    dossier = event.dossier
    opposed = event.emergency_oppositions
    details = C.EmergencyPreferences(
        oppose_bris_de_glace=opposed.oppose_bris_de_glace,
        oppose_centre_15=opposed.oppose_centre_15,
    ).SerializeToString(deterministic=True)
    actor = P.Principal(subject=event.header.actor)
    now = utcnow()

    async def write(appender: LogAppender) -> None:
        session = appender.session
        if await repository.rule(session, dossier, rules.EMERGENCY_PREFERENCES_ID) is not None:
            return  # set already (by this event, or by the patient since)
        out = await rules.new_rule(
            session,
            actor,
            dossier,
            kind=C.ACCESS_RULE_KIND_EMERGENCY_PREFERENCES,
            rpps="",
            details=details,
            now=now,
            rule_id=rules.EMERGENCY_PREFERENCES_ID,
        )
        # The patient's own choice, relayed: no notification (by_patient).
        await published.consent_changed(
            session, dossier, out.name, actor.subject, by_patient=True, when=now
        )

    await rt.write(dossier, write)


async def _creator_grant(rt: Runtime, event: records_events.DossierCreated) -> None:
    dossier = event.dossier
    creator = event.creating_professional
    principal = P.Principal(
        kind=P.PRINCIPAL_KIND_PROFESSIONAL,
        subject=creator.rpps,
        rpps=creator.rpps,
        profession_code=creator.profession_code,
        specialty_code=creator.specialty_code,
    )
    rights = rt.matrix.profession_rights(creator.profession_code, creator.specialty_code)
    if rights is None:  # refused at the edge already: an excluded profession creates nothing
        log.warning("creator_excluded", dossier=dossier)
        return
    display = ""
    try:
        info = await rt.directory.lookup(creator.rpps)
    except ProfessionalNotFoundError:
        info = None
    if info is not None:
        display = info.display_name
    now = utcnow()
    rule_id = creator_rule_id(dossier)
    details = C.GrantDetails(
        source=C.GRANT_SOURCE_RECORD_CREATION,
        care_context=C.CareContext(consent_attested=True, institution_id=creator.institution_id),
    )
    details.care_context.attest_time.FromDatetime(now)
    req = Request(principal, A.ACTION_MANAGE_RECORD, A.RESOURCE_KIND_DOSSIER, CREATE_DOSSIER)
    scope = P.Scope(mode=NORMAL, policy_version=rt.matrix.version)

    decision = Decision(
        True,
        RECORD_CREATOR,
        RECORD_CREATOR,
        OK,
        NORMAL,
        scope,
        (OB_AUDIT, OB_FIRST),
        first_access=True,
    )

    async def write(appender: LogAppender, entry: str) -> None:
        session = appender.session
        if await repository.rule(session, dossier, rule_id) is not None:
            return
        out = await rules.new_rule(
            session,
            principal,
            dossier,
            kind=C.ACCESS_RULE_KIND_GRANT,
            rpps=creator.rpps,
            details=details.SerializeToString(deterministic=True),
            now=now,
            display=display,
            profession=creator.profession_code,
            rule_id=rule_id,
        )
        await published.consent_changed(
            session,
            dossier,
            out.name,
            principal.subject,
            by_patient=False,
            when=now,
            actor_rpps=creator.rpps,
        )

    await authorizing.record_decision(
        rt,
        dossier,
        principal,
        req,
        decision,
        now=now,
        resource=f"{dossier}/accessRules/{rule_id}",
        request_id=(event.header.event_id or rule_id)[:64],
        extra=write,
    )
