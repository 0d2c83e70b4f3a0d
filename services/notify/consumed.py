"""What notify reads from records, consent and identity events, and on which subjects.

Each source subject has its own durable consumer, its own dead-letter subject
(`dmp.notify.deadletter.<source>`) and a replay subject
(`dmp.notify.replay.<original subject>`) consumed the same way, so an operator
can push a dead letter through the normal path again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from dmp.consent.v1 import events_pb2 as consent_events
from dmp.identity.v1 import events_pb2 as identity_events
from dmp.notify.v1 import notify_pb2
from dmp.records.v1 import events_pb2 as records_events
from kit import clock
from kit.consumer import PermanentFailureError
from services.notify import event_templates, models, validation

REPLAY_PREFIX = "dmp.notify.replay."
DEADLETTER_PREFIX = "dmp.notify.deadletter."

DOSSIER_CREATED = "dmp.records.dossier.created"
DOSSIER_CLOSED = "dmp.records.dossier.closed"
DOSSIER_REACTIVATED = "dmp.records.dossier.reactivated"
DOSSIER_TERMS_ACCEPTED = "dmp.records.dossier.terms_accepted"
DOCUMENT_ADDED = "dmp.records.document.added"
DOCUMENT_VISIBILITY_CHANGED = "dmp.records.document.visibility_changed"
ADVANCE_DIRECTIVES_CHANGED = "dmp.records.advance_directives.changed"
VACCINATION_RECORDED = "dmp.records.vaccination.recorded"
ACCESS_RECORDED = "dmp.consent.access.recorded"
CONSENT_CHANGED = "dmp.consent.changed"
CONTACT_GIVEN = "dmp.identity.contact.given"


@dataclass(frozen=True)
class Source:
    """One subscription: a filter on a stream, and where its failures go."""

    name: str
    stream_owner: str
    filter_subject: str
    deadletter: str

    @property
    def deadletter_subject(self) -> str:
        return DEADLETTER_PREFIX + self.deadletter

    @property
    def replay_filter(self) -> str:
        return REPLAY_PREFIX + self.filter_subject


SOURCES: tuple[Source, ...] = (
    Source("records-dossier", "records", "dmp.records.dossier.>", "dossier_lifecycle"),
    Source("records-document", "records", "dmp.records.document.>", "document_added"),
    Source(
        "records-directives",
        "records",
        "dmp.records.advance_directives.>",
        "advance_directives_changed",
    ),
    Source("records-vaccination", "records", "dmp.records.vaccination.>", "vaccination_recorded"),
    Source("consent-access", "consent", ACCESS_RECORDED, "access_recorded"),
    Source("consent-changed", "consent", CONSENT_CHANGED, "access_rules_changed"),
    Source("identity-contact", "identity", CONTACT_GIVEN, "contact_given"),
)


def source_of(subject: str) -> Source | None:
    for source in SOURCES:
        prefix = source.filter_subject.removesuffix(">")
        if subject == source.filter_subject or (
            source.filter_subject.endswith(">") and subject.startswith(prefix)
        ):
            return source
    return None


def original_subject(subject: str) -> str:
    """The records/consent subject of a message, seen directly or through a replay."""
    while subject.startswith(REPLAY_PREFIX):
        subject = subject.removeprefix(REPLAY_PREFIX)
    return subject


_DOSSIER = re.compile(r"dossiers/[A-Za-z0-9_.-]{1,64}")
_DOCUMENT = re.compile(r"dossiers/[A-Za-z0-9_.-]{1,64}/documents/[A-Za-z0-9_.-]{1,64}")
_VACCINATION = re.compile(r"dossiers/[A-Za-z0-9_.-]{1,64}/vaccinations/[A-Za-z0-9_.-]{1,64}")
_INS = re.compile(r"[A-Za-z0-9]{1,64}")
_EVENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass(frozen=True)
class Representative:
    ins: str
    access_end_time: datetime | None


@dataclass(frozen=True)
class DossierFacts:
    """What a dossier event tells about who the record belongs to."""

    patient_ins: str
    minor: bool | None = None
    representatives: tuple[Representative, ...] | None = None


@dataclass(frozen=True)
class GivenContact:
    """Contact data given for a patient (at sign-up or at the record's creation)."""

    ins: str
    email: str
    mobile_phone: str
    source: str  # models.SOURCE_*


@dataclass(frozen=True)
class Notice:
    """Something the patient should be told about."""

    kind: int
    variant: str
    urgent: bool = False


@dataclass(frozen=True)
class Booster:
    """What a vaccination event tells the reminder schedule: the vaccination, when its
    booster is due (None: no booster), and the earlier vaccinations it is the booster of."""

    vaccination: str
    due_date: date | None
    fulfils: tuple[str, ...]


@dataclass(frozen=True)
class Event:
    """A decoded source event, reduced to what notify needs (ids and flags)."""

    subject: str
    event_id: str
    dossier: str
    occur_time: datetime
    notice: Notice | None = None
    facts: DossierFacts | None = None
    #: For document events: the document and whether it is hidden from the patient.
    document: str = ""
    hidden: bool = False
    #: Contact data the event gives (stored before any notice of the same event is queued).
    contacts: tuple[GivenContact, ...] = ()
    #: Idempotency key of the notice when it is not the event id: one emergency session
    #: is alerted once (per recipient and channel), whatever number of accesses it holds.
    notice_key: str = ""
    #: For vaccination events: the booster reminder to schedule or cancel.
    booster: Booster | None = None


def _time(ts: Timestamp, has: bool) -> datetime:
    return ts.ToDatetime(UTC) if has else clock.now()


def _check(event_id: str, dossier: str) -> None:
    if not _EVENT_ID.fullmatch(event_id) or not _DOSSIER.fullmatch(dossier):
        raise PermanentFailureError("event id or dossier missing or malformed")


def _given(ins: str, email: str, phone: str, source: str) -> GivenContact | None:
    """The well-formed part of contact data from an event; None when nothing usable.

    A malformed value is dropped (never logged: it is personal data), the rest kept.
    """
    email = email.strip()
    phone = phone.strip()
    email = email if email and validation.is_valid_email(email) else ""
    phone = phone if phone and validation.is_valid_phone(phone) else ""
    if not _INS.fullmatch(ins) or not (email or phone):
        return None
    return GivenContact(ins, email, phone, source)


def kept_payload(subject: str, data: bytes) -> bytes:
    """The event as kept in `notifications.source_payload` (for its dead letter): without the
    contact data it carries, which lives in `contact_preferences` only."""
    if subject != DOSSIER_CREATED:
        return data
    created = records_events.DossierCreated.FromString(data)
    created.ClearField("contact_email")
    created.ClearField("contact_mobile_phone")
    for rep in created.legal_representatives:
        rep.ClearField("contact_email")
        rep.ClearField("contact_mobile_phone")
    return created.SerializeToString(deterministic=True)


def emergency_key(access_rule: str) -> str:
    """Notice key of an emergency session (fits notifications.event_id)."""
    return "emergency." + hashlib.sha256(access_rule.encode()).hexdigest()[:40]


def decode(subject: str, data: bytes, fallback_event_id: str) -> Event | None:
    """Decode an event of `subject`; None for subjects notify does not act on.

    Raises PermanentFailureError for a payload that can never be handled.
    """
    try:
        return _decode(subject, data, fallback_event_id)
    except DecodeError as exc:
        raise PermanentFailureError(f"undecodable {subject}") from exc


def _decode(subject: str, data: bytes, fallback: str) -> Event | None:
    if subject.startswith("dmp.records.dossier."):
        return _dossier(subject, data, fallback)
    if subject in (DOCUMENT_ADDED, DOCUMENT_VISIBILITY_CHANGED):
        return _document(subject, data, fallback)
    if subject == ADVANCE_DIRECTIVES_CHANGED:
        return _directives(subject, data, fallback)
    if subject == VACCINATION_RECORDED:
        return _vaccination(subject, data, fallback)
    if subject == ACCESS_RECORDED:
        return _access(subject, data, fallback)
    if subject == CONSENT_CHANGED:
        return _consent(subject, data, fallback)
    if subject == CONTACT_GIVEN:
        return _contact(subject, data, fallback)
    return None


def _contact(subject: str, data: bytes, fallback: str) -> Event | None:
    given = identity_events.ContactGiven.FromString(data)
    if not _EVENT_ID.fullmatch(fallback):
        raise PermanentFailureError("event id missing or malformed")
    # At a re-activation the patient replaces the contacts they lost, preferences included.
    source = models.SOURCE_PATIENT if given.reactivation else models.SOURCE_SIGN_UP
    contact = _given(given.ins, given.email, given.mobile_phone, source)
    if contact is None:
        return None
    return Event(subject, fallback, "", clock.now(), contacts=(contact,))


def _dossier(subject: str, data: bytes, fallback: str) -> Event | None:
    if subject == DOSSIER_CREATED:
        created = records_events.DossierCreated.FromString(data)
        eid = created.header.event_id or fallback
        _check(eid, created.dossier)
        if not _INS.fullmatch(created.patient_ins):
            raise PermanentFailureError("patient_ins missing or malformed")
        reps = tuple(
            Representative(
                r.ins,
                r.access_end_time.ToDatetime(UTC) if r.HasField("access_end_time") else None,
            )
            for r in created.legal_representatives
            if _INS.fullmatch(r.ins)
        )
        given = [
            _given(
                created.patient_ins,
                created.contact_email,
                created.contact_mobile_phone,
                models.SOURCE_RECORD_CREATION,
            ),
            *(
                _given(
                    r.ins, r.contact_email, r.contact_mobile_phone, models.SOURCE_RECORD_CREATION
                )
                for r in created.legal_representatives
            ),
        ]
        return Event(
            subject,
            eid,
            created.dossier,
            _time(created.header.occur_time, created.header.HasField("occur_time")),
            notice=Notice(notify_pb2.NOTIFICATION_KIND_DOSSIER_LIFECYCLE, event_templates.CREATED),
            facts=DossierFacts(created.patient_ins, created.minor, reps),
            contacts=tuple(c for c in given if c is not None),
        )
    if subject not in (DOSSIER_CLOSED, DOSSIER_REACTIVATED, DOSSIER_TERMS_ACCEPTED):
        return None
    changed = records_events.DossierStateChanged.FromString(data)
    eid = changed.header.event_id or fallback
    _check(eid, changed.dossier)
    facts = DossierFacts(changed.patient_ins) if _INS.fullmatch(changed.patient_ins) else None
    notice = None
    if subject == DOSSIER_CLOSED:
        notice = Notice(notify_pb2.NOTIFICATION_KIND_DOSSIER_LIFECYCLE, event_templates.CLOSED)
    elif subject == DOSSIER_REACTIVATED:
        notice = Notice(notify_pb2.NOTIFICATION_KIND_DOSSIER_LIFECYCLE, event_templates.REACTIVATED)
    return Event(
        subject,
        eid,
        changed.dossier,
        _time(changed.header.occur_time, changed.header.HasField("occur_time")),
        notice=notice,
        facts=facts,
    )


def _document(subject: str, data: bytes, fallback: str) -> Event:
    doc = records_events.DocumentChanged.FromString(data)
    eid = doc.header.event_id or fallback
    _check(eid, doc.dossier)
    if not _DOCUMENT.fullmatch(doc.document) or not doc.document.startswith(doc.dossier + "/"):
        raise PermanentFailureError("document missing or malformed")
    return Event(
        subject,
        eid,
        doc.dossier,
        _time(doc.header.occur_time, doc.header.HasField("occur_time")),
        notice=Notice(notify_pb2.NOTIFICATION_KIND_DOCUMENT_ADDED, event_templates.DEFAULT),
        document=doc.document,
        hidden=doc.invisible_to_patient,
    )


def _directives(subject: str, data: bytes, fallback: str) -> Event:
    changed = records_events.AdvanceDirectivesChanged.FromString(data)
    eid = changed.header.event_id or fallback
    _check(eid, changed.dossier)
    return Event(
        subject,
        eid,
        changed.dossier,
        _time(changed.header.occur_time, changed.header.HasField("occur_time")),
        notice=Notice(
            notify_pb2.NOTIFICATION_KIND_ADVANCE_DIRECTIVES_CHANGED, event_templates.DEFAULT
        ),
    )


def _vaccination(subject: str, data: bytes, fallback: str) -> Event:
    recorded = records_events.VaccinationRecorded.FromString(data)
    eid = recorded.header.event_id or fallback
    _check(eid, recorded.dossier)
    named = (recorded.vaccination, *recorded.fulfils)
    if not all(_VACCINATION.fullmatch(n) and n.startswith(recorded.dossier + "/") for n in named):
        raise PermanentFailureError("vaccination missing or malformed")
    due: date | None = None
    day = recorded.booster_date
    if day.year or day.month or day.day:
        try:
            due = date(day.year, day.month, day.day)
        except ValueError as exc:
            raise PermanentFailureError("booster date malformed") from exc
    return Event(
        subject,
        eid,
        recorded.dossier,
        _time(recorded.header.occur_time, recorded.header.HasField("occur_time")),
        booster=Booster(recorded.vaccination, due, tuple(recorded.fulfils)),
    )


def _access(subject: str, data: bytes, fallback: str) -> Event | None:
    access = consent_events.AccessRecorded.FromString(data)
    eid = access.event_id or fallback
    _check(eid, access.dossier)
    when = _time(access.occur_time, access.HasField("occur_time"))
    key = ""
    if access.activation_reissued:
        notice = Notice(
            notify_pb2.NOTIFICATION_KIND_ACTIVATION_REISSUED, event_templates.DEFAULT, urgent=True
        )
    elif access.emergency:
        notice = Notice(
            notify_pb2.NOTIFICATION_KIND_EMERGENCY_ACCESS, event_templates.DEFAULT, urgent=True
        )
        rule = access.emergency_access_rule
        if rule:
            if not rule.startswith(access.dossier + "/accessRules/"):
                raise PermanentFailureError("emergency access rule malformed")
            key = emergency_key(rule)
    elif access.first_access:
        notice = Notice(notify_pb2.NOTIFICATION_KIND_FIRST_ACCESS, event_templates.DEFAULT)
    else:
        return None
    return Event(subject, eid, access.dossier, when, notice=notice, notice_key=key)


def _consent(subject: str, data: bytes, fallback: str) -> Event | None:
    changed_rule = consent_events.ConsentChanged.FromString(data)
    eid = changed_rule.event_id or fallback
    _check(eid, changed_rule.dossier)
    # No access rule: a cache invalidation (e.g. after a record state change).
    # By the patient: they know already.
    if not changed_rule.access_rule or changed_rule.by_patient:
        return None
    return Event(
        subject,
        eid,
        changed_rule.dossier,
        _time(changed_rule.occur_time, changed_rule.HasField("occur_time")),
        notice=Notice(notify_pb2.NOTIFICATION_KIND_ACCESS_RULES_CHANGED, event_templates.DEFAULT),
    )
