"""The scripted journey of `dmp demo`, every call through the gateway.

A fresh patient (new INS, e-mail and phone) per run, so the demo works on a
platform that already ran it. The documents are invented sample text; the
demo prints titles and sizes, never content.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
from cryptography import x509

from dmp.authz.v1 import principal_pb2
from dmp.consent.v1 import consent_pb2, consent_pb2_grpc
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_dev import pki
from dmp_dev.demo.connect import (
    Channels,
    DemoError,
    Endpoints,
    mails_to,
    read_sms_code,
    sms_records,
)
from dmp_dev.demo.connect import text_of as mail_text
from dmp_dev.demo.requests import desk_creation
from dmp_dev.demo.steps import Runner
from kit import ins as kit_ins

R, C, ID, N = records_pb2, consent_pb2, identity_pb2, notify_pb2
S = grpc.StatusCode
REFUSED = (S.NOT_FOUND, S.PERMISSION_DENIED)
#: Right after CreateDossier, consent learns of the record by event: retried briefly.
LAGGING = (S.NOT_FOUND, S.FAILED_PRECONDITION)
TIMEOUT = 15.0
REPORT_TEXT = "Consultation du jour : examen clinique sans particularité. Suite du traitement."
PRESCRIPTION_TEXT = "Ordonnance : paracétamol 1 g, 3 fois par jour pendant 5 jours."


def rid() -> str:
    return str(uuid.uuid4())


def new_ins() -> str:
    """A valid INS (NIR + key) nobody used: random order number."""
    nir = f"2{secrets.randbelow(60) + 40:02d}{secrets.randbelow(12) + 1:02d}75"
    nir += f"{secrets.randbelow(1000):03d}{secrets.randbelow(1000):03d}"
    return kit_ins.with_key(nir)


@dataclass(frozen=True)
class Actor:
    stem: str
    label: str
    rpps: str


@dataclass
class Patient:
    ins: str
    email: str
    phone: str
    password: str
    dossier: str = ""
    token: str = ""

    def md(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


@dataclass
class Documents:
    report: R.Document = field(default_factory=R.Document)
    prescription: R.Document = field(default_factory=R.Document)


def actor(endpoints: Endpoints, stem: str, role: str) -> Actor:
    path = endpoints.pki_dir / "cards" / f"{stem}.crt"
    if not path.is_file():
        raise DemoError(f"card {stem!r} not found in {path.parent}")
    fields = pki.card_fields(x509.load_pem_x509_certificate(path.read_bytes()))
    return Actor(stem, f"{fields.name} ({role})", fields.rpps)


def _document(title: str, type_code: str, text: str) -> R.Document:
    doc = R.Document(
        title=title,
        type_code=type_code,
        content=text.encode(),
        format=R.DOCUMENT_FORMAT_TEXT_PLAIN,
    )
    doc.service_start_time.FromDatetime(datetime.now(UTC) - timedelta(hours=2))
    return doc


class Journey:
    def __init__(self, endpoints: Endpoints, runner: Runner, note: Callable[[str], None]) -> None:
        self.e = endpoints
        self.run = runner
        self.note = note
        self.ch = Channels(endpoints)
        self.desk = actor(endpoints, "desk", "guichet CPAM")
        self.doctor = actor(endpoints, "doctor", "médecin")
        self.pharmacist = actor(endpoints, "pharmacist", "pharmacien")
        self.optician = actor(endpoints, "optician", "opticien")
        self.regulateur = actor(endpoints, "regulateur", "régulateur Centre 15")
        suffix = secrets.token_hex(4)
        self.patient = Patient(
            ins=new_ins(),
            email=f"patient.{suffix}@demo.example.org",
            phone=f"+3367{secrets.randbelow(10**7):07d}",
            password=f"Demo-{secrets.token_hex(5)}-Pw9!",
        )
        self.docs = Documents()

    # -- stubs ------------------------------------------------------------------------------
    def records(self, who: Actor | None = None) -> records_pb2_grpc.RecordsServiceStub:
        return records_pb2_grpc.RecordsServiceStub(self._channel(who))

    def consent(self, who: Actor | None = None) -> consent_pb2_grpc.ConsentServiceStub:
        return consent_pb2_grpc.ConsentServiceStub(self._channel(who))

    def identity(self, who: Actor | None = None) -> identity_pb2_grpc.IdentityServiceStub:
        return identity_pb2_grpc.IdentityServiceStub(self._channel(who))

    def notify(self) -> notify_pb2_grpc.NotifyServiceStub:
        return notify_pb2_grpc.NotifyServiceStub(self.ch.patient())

    def _channel(self, who: Actor | None) -> grpc.Channel:
        return self.ch.patient() if who is None else self.ch.card(who.stem)

    # -- the journey --------------------------------------------------------------------------
    def play(self) -> None:
        try:
            self.ch.check_reachable()
            self.sign_up()
            self.log_in()
            self.choose_contacts_and_grant()
            self.doctor_uploads()
            self.patient_is_notified()
            self.pharmacist_reads()
            self.optician_is_refused()
            self.blocked_is_refused()
            self.emergency_read()
        finally:
            self.ch.close()

    def sign_up(self) -> None:
        p = self.patient
        self.note(f"New patient for this run: INS {p.ins}, contact {p.email} / {p.phone}")
        dossier = self.run.ok(
            self.desk.label,
            "records.CreateDossier (at the desk, insured's consent attested)",
            lambda: self.records(self.desk).CreateDossier(self._create_request(), timeout=TIMEOUT),
            lambda d: f"{d.name} {R.DossierState.Name(d.state)}",
        )
        p.dossier = dossier.name
        issued = self.run.ok(
            self.desk.label,
            "identity.IssueCreationCode",
            lambda: self.identity(self.desk).IssueCreationCode(
                ID.IssueCreationCodeRequest(request_id=rid(), ins=p.ins), timeout=TIMEOUT
            ),
            lambda r: "creation code handed to the patient (shown once)",
            retry_codes=LAGGING,
        )
        self.run.ok(
            "patient",
            "identity.RegisterPatientAccount (online, with the creation code)",
            lambda: self.identity().RegisterPatientAccount(
                ID.RegisterPatientAccountRequest(
                    request_id=rid(),
                    ins=p.ins,
                    creation_code=issued.creation_code,
                    password=p.password,
                    email=p.email,
                    mobile_phone=p.phone,
                ),
                timeout=TIMEOUT,
            ),
            lambda a: f"{a.name}, codes by {ID.DeliveryChannel.Name(a.code_channel)}",
        )

    def _create_request(self) -> R.CreateDossierRequest:
        return desk_creation(self.patient.ins)

    def log_in(self) -> None:
        p = self.patient
        sms_before = len(sms_records(self.e))
        challenge = self.run.ok(
            "patient",
            "identity.StartLogin (INS + password)",
            lambda: self.identity().StartLogin(
                ID.StartLoginRequest(request_id=rid(), identifier=p.ins, password=p.password),
                timeout=TIMEOUT,
            ),
            lambda r: (
                f"code sent by {ID.DeliveryChannel.Name(r.channel)} to {r.masked_destination}"
            ),
        )
        self.note(
            f"Reading the one-time code from the dev SMS sink {self.e.sms_file} "
            "(in production it reaches the patient's phone)"
        )
        code = read_sms_code(self.e, p.phone, sms_before)
        session = self.run.ok(
            "patient",
            "identity.VerifyOneTimeCode",
            lambda: self.identity().VerifyOneTimeCode(
                ID.VerifyOneTimeCodeRequest(
                    request_id=rid(), challenge=challenge.challenge, code=code
                ),
                timeout=TIMEOUT,
            ),
            lambda r: f"session opened ({r.tokens.session})",
        )
        p.token = session.tokens.access_token

    def choose_contacts_and_grant(self) -> None:
        p = self.patient
        prefs = N.ContactPreferences(
            name=f"patients/{p.ins}/contactPreferences", email=p.email, mobile_phone=p.phone
        )
        self.run.ok(
            "patient",
            "notify.SetContactPreferences (e-mail; emergencies on every channel)",
            lambda: self.notify().SetContactPreferences(
                N.SetContactPreferencesRequest(contact_preferences=prefs, request_id=rid()),
                metadata=p.md(),
                timeout=TIMEOUT,
            ),
            lambda r: f"{r.name}",
        )
        for who in (self.doctor, self.pharmacist, self.optician):
            self.run.ok(
                "patient",
                f"consent.GrantAccess to {who.label}",
                lambda who=who: self.consent().GrantAccess(  # type: ignore[misc]
                    C.GrantAccessRequest(
                        parent=p.dossier, professional_rpps=who.rpps, request_id=rid()
                    ),
                    metadata=p.md(),
                    timeout=TIMEOUT,
                ),
                lambda r: f"{C.AccessRuleKind.Name(r.kind)} {C.AccessRuleState.Name(r.state)}",
                retry_codes=LAGGING,
            )

    def doctor_uploads(self) -> None:
        records = self.records(self.doctor)
        for attr, doc in (
            ("report", _document("Compte rendu de consultation", "11488-4", REPORT_TEXT)),
            ("prescription", _document("Ordonnance", "57833-6", PRESCRIPTION_TEXT)),
        ):
            created = self.run.ok(
                self.doctor.label,
                f"records.CreateDocument ({doc.title}, type {doc.type_code})",
                lambda doc=doc: records.CreateDocument(  # type: ignore[misc]
                    R.CreateDocumentRequest(
                        parent=self.patient.dossier, document=doc, request_id=rid()
                    ),
                    timeout=TIMEOUT,
                ),
                lambda d: f"{d.name} class {d.class_code}, {d.size_bytes} bytes, encrypted",
                retry_codes=LAGGING,
            )
            setattr(self.docs, attr, created)

    def patient_is_notified(self) -> None:
        p = self.patient
        self.run.ok(
            "patient",
            "notify.ListNotifications",
            lambda: self.notify().ListNotifications(
                N.ListNotificationsRequest(parent=f"patients/{p.ins}"),
                metadata=p.md(),
                timeout=TIMEOUT,
            ),
            _describe_notifications,
            until=lambda r: any(
                n.kind == N.NOTIFICATION_KIND_DOCUMENT_ADDED
                and n.status == N.DELIVERY_STATUS_SENT
                and n.channel == N.CHANNEL_EMAIL
                for n in r.notifications
            ),
        )
        self.note(f"Reading the e-mail from the dev mail sink {self.e.mail_dir}")
        mails = self.run.ok(
            "patient",
            "e-mail in the dev mail sink",
            lambda: mails_to(self.e, p.email),
            lambda ms: "; ".join(f"“{m['Subject']}”" for m in ms),
            until=bool,
        )
        words = (REPORT_TEXT, PRESCRIPTION_TEXT, self.docs.report.title, "paracétamol")
        leaked = [m for m in mails if any(w in mail_text(m) + str(m["Subject"]) for w in words)]
        self.run.check(
            "patient",
            "e-mails hold no medical content (no title, no text)",
            not leaked,
            f"{len(mails)} e-mail(s) checked" if not leaked else f"{len(leaked)} leak(s)",
        )

    def pharmacist_reads(self) -> None:
        records = self.records(self.pharmacist)
        listing = self.run.ok(
            self.pharmacist.label,
            "records.ListDocuments",
            lambda: records.ListDocuments(
                R.ListDocumentsRequest(parent=self.patient.dossier), timeout=TIMEOUT
            ),
            lambda r: "sees " + (", ".join(d.title for d in r.documents) or "nothing"),
        )
        seen = [d.name for d in listing.documents]
        self.run.check(
            self.pharmacist.label,
            "the listing holds the prescription only (matrix: class 42, not 10)",
            seen == [self.docs.prescription.name],
            f"{len(seen)} document(s) listed",
        )
        self.run.ok(
            self.pharmacist.label,
            "records.GetDocument (the prescription)",
            lambda: records.GetDocument(
                R.GetDocumentRequest(name=self.docs.prescription.name), timeout=TIMEOUT
            ),
            lambda d: f"{d.title}: {len(d.content)} bytes read",
        )
        self.run.refused(
            self.pharmacist.label,
            "records.GetDocument (the consultation report: not in the pharmacist's matrix)",
            lambda: records.GetDocument(
                R.GetDocumentRequest(name=self.docs.report.name), timeout=TIMEOUT
            ),
            REFUSED,
        )

    def optician_is_refused(self) -> None:
        self.run.refused(
            self.optician.label,
            "records.GetDocument (the consultation report)",
            lambda: self.records(self.optician).GetDocument(
                R.GetDocumentRequest(name=self.docs.report.name), timeout=TIMEOUT
            ),
            REFUSED,
        )

    def blocked_is_refused(self) -> None:
        p = self.patient
        self.run.ok(
            "patient",
            f"consent.BlockProfessional {self.pharmacist.label}",
            lambda: self.consent().BlockProfessional(
                C.BlockProfessionalRequest(
                    parent=p.dossier, professional_rpps=self.pharmacist.rpps, request_id=rid()
                ),
                metadata=p.md(),
                timeout=TIMEOUT,
            ),
            lambda r: f"{C.AccessRuleKind.Name(r.kind)} {C.AccessRuleState.Name(r.state)}",
        )
        self.run.refused(
            self.pharmacist.label,
            "records.GetDocument (the prescription he read before)",
            lambda: self.records(self.pharmacist).GetDocument(
                R.GetDocumentRequest(name=self.docs.prescription.name), timeout=TIMEOUT
            ),
            REFUSED,
            wait=True,
        )

    def emergency_read(self) -> None:
        p = self.patient
        self.run.ok(
            self.regulateur.label,
            "consent.StartEmergencyAccess (mode centre_15)",
            lambda: self.consent(self.regulateur).StartEmergencyAccess(
                C.StartEmergencyAccessRequest(
                    parent=p.dossier,
                    mode=principal_pb2.ACCESS_MODE_CENTRE_15,
                    reason=C.EMERGENCY_REASON_MEDICAL_REGULATION_CALL,
                    justification="Appel au 15 : patiente inconsciente, recherche d'antécédents.",
                    request_id=rid(),
                ),
                timeout=TIMEOUT,
            ),
            lambda r: f"emergency access until {r.expire_time.ToDatetime(UTC):%Y-%m-%d %H:%M} UTC",
        )
        self.run.ok(
            self.regulateur.label,
            "records.GetDocument (the consultation report, emergency mode)",
            lambda: self.records(self.regulateur).GetDocument(
                R.GetDocumentRequest(name=self.docs.report.name), timeout=TIMEOUT
            ),
            lambda d: f"{d.title}: {len(d.content)} bytes read",
        )
        self.run.ok(
            "patient",
            "consent.ListAccessHistory (centre_15 entries)",
            lambda: self.consent().ListAccessHistory(
                C.ListAccessHistoryRequest(parent=p.dossier, filter="mode = CENTRE_15"),
                metadata=p.md(),
                timeout=TIMEOUT,
            ),
            lambda r: "; ".join(
                f"{e.principal.display_name or e.principal.rpps} "
                f"{e.method.rsplit('/', 1)[-1]} {C.Decision.Name(e.decision)}"
                for e in r.entries[:3]
            ),
            until=lambda r: any(
                e.principal.rpps == self.regulateur.rpps
                and e.method.endswith("/GetDocument")
                and e.decision == C.DECISION_ALLOWED
                for e in r.entries
            ),
        )
        self.run.ok(
            "patient",
            "notify.ListNotifications (emergency access notice)",
            lambda: self.notify().ListNotifications(
                N.ListNotificationsRequest(parent=f"patients/{p.ins}"),
                metadata=p.md(),
                timeout=TIMEOUT,
            ),
            lambda r: _describe_notifications(r, N.NOTIFICATION_KIND_EMERGENCY_ACCESS),
            until=lambda r: any(
                n.kind == N.NOTIFICATION_KIND_EMERGENCY_ACCESS for n in r.notifications
            ),
        )


def _describe_notifications(response: N.ListNotificationsResponse, kind: int = 0) -> str:
    shown = [
        f"{N.NotificationKind.Name(n.kind).removeprefix('NOTIFICATION_KIND_')} "
        f"by {N.Channel.Name(n.channel).removeprefix('CHANNEL_')} to {n.masked_destination} "
        f"({N.DeliveryStatus.Name(n.status).removeprefix('DELIVERY_STATUS_')})"
        for n in response.notifications
        if not kind or n.kind == kind
    ][:4]
    return "; ".join(shown) or "none yet"
