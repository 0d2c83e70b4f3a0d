"""A write's answer tells no more than a read: every public write RPC × every card the
gateway lets through, on the launcher-started platform with real certificates and tokens.

The finding: a médecin without a grant was refused GetHealthProfile, yet an empty
UpdateHealthProfile answered the whole profile. Rule 5 lets a professional write without a
read grant; it never lets them read by writing.

The sweep. For each card (a column of `TABLE`) a fresh record is created at a CPAM desk and
seeded by others (the patient's profile, vaccination and grants; a document by another
médecin), each value carrying a marker. Then the card calls every public write RPC
(`WRITE_METHODS`, derived from the protos' `dmp.authz.v1.authz` actions and checked
against the table) on that record. Each answer is compared with what the same card reads
with the matching read RPC just before and just after the write: every field of the answer
must be explained by one of those reads, by what the request sent, or be a server stamp of
this very write (`name`, `etag`, times, new ids, the caller's own author stamp...). A read
that is refused explains nothing, so the answer may then hold only what was sent and the
stamps. `TABLE` says which cells are answered; every other cell must be refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import consent_pb2, consent_pb2_grpc
from dmp.history.v1 import history_pb2, history_pb2_grpc
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp.records.v1 import records_pb2, records_pb2_grpc
from dmp_dev import pki
from dmp_dev.testing.stack import LiveStack
from services.history_feed.synthetic import Generator
from tests.e2e.helpers import (
    bearer,
    eventually,
    expect,
    grant,
    new_record,
    one_time_code,
    patient_md,
    rid,
    rpps,
    until_refused,
)
from tests.fixtures.records import make_ins
from tests.fixtures.stack import EXTRA_CARDS
from tests.records.helpers import create_request, doc

R = records_pb2
C = consent_pb2
N = notify_pb2
ID = identity_pb2
A = authz_pb2
S = grpc.StatusCode
Md = tuple[tuple[str, str], ...]

WRITE_ACTIONS = frozenset(
    {
        A.ACTION_WRITE,
        A.ACTION_DELETE,
        A.ACTION_MANAGE_RECORD,
        A.ACTION_MANAGE_CONSENT,
        A.ACTION_EMERGENCY_ACCESS,
        A.ACTION_ISSUE_CREATION_CODE,
        A.ACTION_INGEST_HISTORY,
        A.ACTION_MANAGE_ACCOUNT,
    }
)
_SERVICES = (
    records_pb2.DESCRIPTOR.services_by_name["RecordsService"],
    consent_pb2.DESCRIPTOR.services_by_name["ConsentService"],
    notify_pb2.DESCRIPTOR.services_by_name["NotifyService"],
    identity_pb2.DESCRIPTOR.services_by_name["IdentityService"],
    history_pb2.DESCRIPTOR.services_by_name["HistoryFeedService"],
)

# Cards that never reach a write: refused at authentication, or reserved to another test.
NOT_SWEPT = {
    "expired": "certificate expired: refused at authentication",
    "revoked": "in the CRL: refused at authentication",
    "stolen": "the CRL reload test revokes it while the gateway runs; no other test uses it",
}
# Columns: the record's patient (token), the "doctor" card again with the patient's grant,
# then every card of dmp_dev.pki.DEMO_CARDS and tests.fixtures.stack.EXTRA_CARDS that the
# gateway lets through.
CARDS = (
    "patient",
    "doctor+grant",
    *sorted(stem for stem in {*pki.DEMO_CARDS, *EXTRA_CARDS} if stem not in NOT_SWEPT),
)
DOCTORS = ("doctor", "doctor2", "regulateur")  # médecins without a grant on the record
PROFESSIONALS = (*DOCTORS, "pharmacist", "optician", "nurse", "dietitian")

# method × card: the cells whose write is answered; every other cell is refused, by the
# gateway's decision or by the service. Read-shaped MANAGE_ACCOUNT methods
# (GetContactPreferences, ListNotifications) are swept too: they are the patient's own.
TABLE: dict[str, frozenset[str]] = {
    "RecordsService/CreateDossier": frozenset({"patient", "doctor+grant", *PROFESSIONALS, "desk"}),
    "RecordsService/CloseDossier": frozenset({"patient", "desk"}),
    "RecordsService/ReactivateDossier": frozenset({"patient", "desk"}),
    "RecordsService/AcceptTermsOfUse": frozenset({"patient"}),
    # Rule 5: writing needs no grant, only the matrix (the AMO deposits class 60).
    "RecordsService/CreateDocument": frozenset(
        {"patient", "doctor+grant", *DOCTORS, "pharmacist", "nurse", "dietitian", "amo"}
    ),
    # Changing a document needs its author to find it: not the AMO nor the dietitian,
    # whose own document is of a class they do not read.
    "RecordsService/ReplaceDocument": frozenset(
        {"patient", "doctor+grant", *DOCTORS, "pharmacist", "nurse"}
    ),
    "RecordsService/UpdateDocumentVisibility": frozenset(
        {"patient", "doctor+grant", *DOCTORS, "pharmacist", "nurse"}
    ),
    "RecordsService/ArchiveDocument": frozenset(
        {"patient", "doctor+grant", *DOCTORS, "pharmacist", "nurse"}
    ),
    "RecordsService/DeleteDocument": frozenset(
        {"patient", "doctor+grant", *DOCTORS, "pharmacist", "nurse"}
    ),
    # Health profile (class 11) and vaccinations (class 52): médecins and the patient (nurses
    # and pharmacists record vaccinations only under an access, which they have not here).
    "RecordsService/UpdateHealthProfile": frozenset({"patient", "doctor+grant", *DOCTORS}),
    "RecordsService/CreateVaccination": frozenset({"patient", "doctor+grant", *DOCTORS}),
    # Rule 12: advance directives, the patient side or a médecin under grant only.
    "RecordsService/UpdateAdvanceDirectives": frozenset({"patient", "doctor+grant"}),
    # A professional grants themself through a care context (doctor+grant already holds one).
    "ConsentService/GrantAccess": frozenset({"patient", *PROFESSIONALS}),
    "ConsentService/RevokeAccess": frozenset({"patient"}),
    "ConsentService/BlockProfessional": frozenset({"patient"}),
    "ConsentService/UnblockProfessional": frozenset({"patient"}),
    "ConsentService/SetAttendingPhysician": frozenset({"patient"}),
    "ConsentService/SetEmergencyPreferences": frozenset({"patient"}),
    "ConsentService/StartEmergencyAccess": frozenset({"doctor+grant", *PROFESSIONALS}),
    "NotifyService/SetContactPreferences": frozenset({"patient"}),
    "NotifyService/GetContactPreferences": frozenset({"patient"}),
    "NotifyService/ListNotifications": frozenset({"patient"}),
    "IdentityService/Logout": frozenset({"patient"}),
    "IdentityService/ChangePassword": frozenset({"patient"}),
    "IdentityService/IssueCreationCode": frozenset({"doctor+grant", *PROFESSIONALS, "desk"}),
    "IdentityService/IssueActivationLetter": frozenset({"doctor+grant", *PROFESSIONALS, "desk"}),
    "HistoryFeedService/IngestClaims": frozenset({"amo"}),
}

# What a card may write (a type its profession's matrix allows; others get a refusal).
DOCUMENT_TYPE = {
    "patient": "",  # the patient's default, class 90
    "pharmacist": "60593-1",  # class 43
    "nurse": "18776-5",  # class 44
    "dietitian": "11506-3",  # a type of class 10 the matrix lists for them
    "amo": "REMB",  # class 60
}
DEFAULT_TYPE = "11488-4"  # class 10
PASSWORD = "Correct-Horse-42-battery"
MARK = "SECRET"  # every value someone else stores carries it


def public_write_methods() -> set[str]:
    """`Service/Method` of every public RPC whose authz action changes something."""
    out = set()
    for service in _SERVICES:
        for method in service.methods:
            option = method.GetOptions().Extensions[authz_pb2.authz]
            if option.action in WRITE_ACTIONS and not option.internal and not option.anonymous:
                out.add(f"{service.name}/{method.name}")
    return out


def test_the_table_covers_every_public_write_rpc_and_card() -> None:
    assert set(TABLE) == public_write_methods()
    assert {"doctor", *DOCTORS, "amo", "desk"} <= set(CARDS)
    assert all(cards <= set(CARDS) for cards in TABLE.values())


# ---------------------------------------------------------------------------
# Comparing an answer with reads
# ---------------------------------------------------------------------------

Stamp = Callable[[Any], bool]


def _always(_: Message) -> bool:
    return True


def _key(message: Message) -> str | None:
    for name in ("item_id", "name", "representative_id"):
        if name in message.DESCRIPTOR.fields_by_name:
            return str(getattr(message, name))
    return None


def unexplained(
    answer: Message, sources: Sequence[Message], stamps: Mapping[str, Stamp], prefix: str = ""
) -> list[str]:
    """Fields of `answer` that no source holds with the same value and no stamp allows."""
    out: list[str] = []
    for fd, value in answer.ListFields():
        path = prefix + fd.name
        stamp = stamps.get(path)
        if stamp is not None and stamp(answer):
            continue
        if fd.message_type is not None:
            if fd.is_repeated:
                for element in value:
                    key = _key(element)
                    pool = [
                        e
                        for s in sources
                        for e in getattr(s, fd.name)
                        if key is None or _key(e) in ("", key)
                    ]
                    out += unexplained(element, pool, stamps, path + ".")
            else:
                pool = [getattr(s, fd.name) for s in sources if s.HasField(fd.name)]
                out += unexplained(value, pool, stamps, path + ".")
        elif fd.is_repeated:
            values = {v for s in sources for v in getattr(s, fd.name)}
            out += [f"{path}={v!r}" for v in value if v not in values]
        elif not any(getattr(s, fd.name) == value for s in sources):
            out.append(f"{path}={value!r}")
    return out


@dataclass(frozen=True)
class Me:
    """The caller as the server stamps it."""

    card: str
    rpps: str = ""

    def is_me(self, author: Any) -> bool:
        return str(author.rpps) == self.rpps

    def stamps(self, *paths: str, **special: Stamp) -> dict[str, Stamp]:
        out: dict[str, Stamp] = dict.fromkeys(paths, _always)
        out.update({k.replace("__", "."): v for k, v in special.items()})
        return out


def _profile_stamps(me: Me) -> dict[str, Stamp]:
    """Ids and the provenance of this write; who first recorded an item only if this write did."""
    out: dict[str, Stamp] = dict.fromkeys(("name", "etag", "update_time"), _always)
    for section in (
        "allergies",
        "conditions",
        "treatments",
        "blood_group",
        "advance_directives",
        "emergency_contacts",
        "measurements",
    ):
        out[f"{section}.item_id"] = _always
        out[f"{section}.provenance.last_updated_by"] = lambda p: me.is_me(p.last_updated_by)
        out[f"{section}.provenance.update_time"] = _always
        out[f"{section}.provenance.author"] = lambda p: (
            me.is_me(p.author) and p.create_time == p.update_time
        )
        out[f"{section}.provenance.create_time"] = lambda p: p.create_time == p.update_time
    return out


def document_stamps(me: Me) -> dict[str, Stamp]:
    return me.stamps(
        "name",
        "etag",
        "update_time",
        "create_time",
        "class_code",
        "submitter",
        "status",
        "version",
        "size_bytes",
        "sha256",
        "release_time",
        "archive_time",
        "delete_time",
        author=lambda d: me.is_me(d.author),
    )


def dossier_stamps(me: Me) -> dict[str, Stamp]:
    return me.stamps(
        "name",
        "etag",
        "state",
        "creation_channel",
        "creator",
        "minor",
        "accepted_terms_version",
        "current_terms_version",
        "terms_accept_time",
        "create_time",
        "update_time",
        "close_time",
        "purge_time",
        "legal_representatives.representative_id",
        "legal_representatives.access_end_time",
    )


def rule_stamps(me: Me) -> dict[str, Stamp]:
    about_me: Stamp = lambda r: r.professional_rpps == me.rpps and bool(me.rpps)  # noqa: E731
    return me.stamps(
        "name",
        "kind",
        "state",
        "etag",
        "creator",
        "create_time",
        "update_time",
        "expire_time",
        "revoke_time",
        "revoker",
        "grant.source",
        "grant.care_context.attest_time",
        professional_rpps=about_me,
        professional_display_name=about_me,
        professional_profession_code=about_me,
    )


def vaccination_stamps(me: Me) -> dict[str, Stamp]:
    return me.stamps(
        "name",
        "provenance.create_time",
        "provenance.update_time",
        professional=lambda v: me.is_me(v.professional),
        provenance__author=lambda p: me.is_me(p.author),
        provenance__last_updated_by=lambda p: me.is_me(p.last_updated_by),
    )


# ---------------------------------------------------------------------------
# The sweep of one card
# ---------------------------------------------------------------------------

Read = Callable[[], Awaitable[Message | None]]


async def _try(read: Read | None) -> Message | None:
    """A read's answer, or None when the card may not read it."""
    if read is None:
        return None
    try:
        return await read()
    except grpc.aio.AioRpcError:
        return None


@dataclass
class Sweep:
    stack: LiveStack
    card: str
    me: Me
    dossier: str
    ins: str
    md: Md = ()
    answered: set[str] = field(default_factory=set)
    refused: dict[str, str] = field(default_factory=dict)
    leaks: list[str] = field(default_factory=list)

    def channel(self) -> grpc.aio.Channel:
        if self.card == "patient":
            return self.stack.patient_channel()
        return self.stack.card_channel(self.card.partition("+")[0])

    async def cell(
        self,
        method: str,
        call: Callable[[], Awaitable[Any]],
        *,
        sent: Iterable[Message] = (),
        stamps: Mapping[str, Stamp],
        read: Callable[[Message | None], Read | None] = lambda _: None,
    ) -> Any:
        """Run one write; compare its answer with the card's reads before and after it."""
        before = await _try(read(None))
        try:
            answer = await call()
        except grpc.aio.AioRpcError as err:
            self.refused[method] = err.code().name
            return None
        self.answered.add(method)
        after = await _try(read(answer))
        sources = [m for m in (before, after, *sent) if m is not None]
        for path in unexplained(answer, sources, stamps):
            self.leaks.append(f"{method} × {self.card}: {path}")
        return answer


async def _sign_up(stack: LiveStack, ins: str) -> str:
    """A real patient account for `ins` and a logged-in token (identity's own methods)."""
    email = f"patient.{uuid.uuid4().hex[:10]}@exemple.fr"
    desk = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("desk"))
    issued = await desk.IssueCreationCode(
        ID.IssueCreationCodeRequest(request_id=rid(), ins=ins), timeout=10
    )
    anonymous = identity_pb2_grpc.IdentityServiceStub(stack.patient_channel())
    await anonymous.RegisterPatientAccount(
        ID.RegisterPatientAccountRequest(
            request_id=rid(),
            ins=ins,
            creation_code=issued.creation_code,
            password=PASSWORD,
            email=email,
        ),
        timeout=15,
    )
    started = await anonymous.StartLogin(
        ID.StartLoginRequest(request_id=rid(), identifier=ins, password=PASSWORD), timeout=15
    )
    code = await one_time_code(stack.mail_dir, email)
    verified = await anonymous.VerifyOneTimeCode(
        ID.VerifyOneTimeCodeRequest(request_id=rid(), challenge=started.challenge, code=code),
        timeout=10,
    )
    return str(verified.tokens.access_token)


@dataclass(frozen=True)
class Seeds:
    document: str  # by another médecin, title carries MARK
    grant_rule: str  # the patient's grant to a professional who is not the card
    block_rule: str  # the patient's block of a professional who is not the card


async def _seed(stack: LiveStack, card: str, dossier: str, ins: str) -> Seeds:
    """What others store in the card's record, each value marked."""
    md = patient_md(stack, ins)
    patient = records_pb2_grpc.RecordsServiceStub(stack.patient_channel())
    profile = R.HealthProfile(name=f"{dossier}/healthProfile")
    profile.conditions.add(
        category=R.CONDITION_CATEGORY_CURRENT_PATHOLOGY,
        code=R.CodedConcept(code="F32", display=f"{MARK} dépression"),
        note=f"{MARK} note",
    )
    profile.emergency_contacts.add(
        display_name=f"{MARK} Contact", relationship="conjoint", phone="+33612345678"
    )
    profile.blood_group.CopyFrom(R.BloodGroup(abo=R.ABO_GROUP_AB, rhesus=R.RHESUS_FACTOR_NEGATIVE))
    await patient.UpdateHealthProfile(
        R.UpdateHealthProfileRequest(health_profile=profile, request_id=rid()), metadata=md
    )
    await patient.CreateVaccination(
        R.CreateVaccinationRequest(
            parent=dossier,
            vaccination=R.Vaccination(
                vaccine=R.CodedConcept(code="J07BM01", display="HPV"),
                administration_date=R.Date(year=2020, month=3, day=4),
                lot_number="L0",
                note=f"{MARK} vaccin",
            ),
            request_id=rid(),
        ),
        metadata=md,
    )
    author = "doctor" if card == "doctor2" else "doctor2"
    other = records_pb2_grpc.RecordsServiceStub(stack.card_channel(author))
    document = await other.CreateDocument(
        R.CreateDocumentRequest(
            parent=dossier, document=doc(title=f"{MARK} compte rendu"), request_id=rid()
        ),
        timeout=10,
    )
    rules = consent_pb2_grpc.ConsentServiceStub(stack.patient_channel())
    granted = await rules.GrantAccess(
        C.GrantAccessRequest(parent=dossier, professional_rpps=rpps("expired"), request_id=rid()),
        metadata=md,
    )
    blocked = await rules.BlockProfessional(
        C.BlockProfessionalRequest(
            parent=dossier, professional_rpps=rpps("revoked"), request_id=rid()
        ),
        metadata=md,
    )
    return Seeds(document.name, granted.name, blocked.name)


async def _records_cells(sweep: Sweep, seeds: Seeds) -> None:
    stack, me, dossier, md = sweep.stack, sweep.me, sweep.dossier, sweep.md
    stub = records_pb2_grpc.RecordsServiceStub(sweep.channel())
    patient = records_pb2_grpc.RecordsServiceStub(stack.patient_channel())
    pmd = patient_md(stack, sweep.ins)
    svc = "RecordsService/"
    doc_stamps = document_stamps(me)

    def read_document(name: str) -> Callable[[Message | None], Read]:
        def read(answer: Message | None) -> Read:
            target = getattr(answer, "name", "") or name
            request = R.GetDocumentRequest(name=target, view=R.DOCUMENT_VIEW_BASIC)
            return lambda: stub.GetDocument(request, metadata=md, timeout=10)

        return read

    # CreateDocument: the card's own document, the target of the document writes below.
    sent = doc(title=f"{sweep.card} wrote this", type_code=DOCUMENT_TYPE.get(sweep.card, ""))
    if sweep.card not in DOCUMENT_TYPE:
        sent.type_code = DEFAULT_TYPE
    create = R.CreateDocumentRequest(parent=dossier, document=sent, request_id=rid())
    shown = R.Document()
    shown.CopyFrom(sent)
    shown.ClearField("content")
    own = await sweep.cell(
        svc + "CreateDocument",
        lambda: stub.CreateDocument(create, metadata=md, timeout=10),
        sent=[shown],
        stamps=doc_stamps,
        read=read_document(""),
    )
    target = own.name if own is not None else seeds.document
    if own is not None and sweep.card != "patient":
        # Someone else's choice on the card's document: the patient masks it.
        await patient.UpdateDocumentVisibility(
            R.UpdateDocumentVisibilityRequest(
                name=target, set_flags=[R.CONFIDENTIALITY_FLAG_MASQUE_PS], request_id=rid()
            ),
            metadata=pmd,
        )
    flag = (
        R.CONFIDENTIALITY_FLAG_MASQUE_PS
        if sweep.card == "patient"
        else R.CONFIDENTIALITY_FLAG_INVISIBLE_REPRESENTANTS_LEGAUX
    )
    visibility = R.UpdateDocumentVisibilityRequest(name=target, set_flags=[flag], request_id=rid())
    await sweep.cell(
        svc + "UpdateDocumentVisibility",
        lambda: stub.UpdateDocumentVisibility(visibility, metadata=md, timeout=10),
        sent=[R.Document(name=target, confidentiality_flags=[flag])],
        stamps=doc_stamps,
        read=read_document(target),
    )
    replacement = R.Document()
    replacement.CopyFrom(sent)
    replacement.title = f"{sweep.card} wrote this again"
    replace = R.ReplaceDocumentRequest(name=target, document=replacement, request_id=rid())
    shown_again = R.Document(replaces=target)
    shown_again.MergeFrom(replacement)
    shown_again.ClearField("content")
    replaced = await sweep.cell(
        svc + "ReplaceDocument",
        lambda: stub.ReplaceDocument(replace, metadata=md, timeout=10),
        sent=[shown_again],
        stamps=doc_stamps,
        read=read_document(""),
    )
    target = replaced.name if replaced is not None else target
    archive = R.ArchiveDocumentRequest(name=target, request_id=rid())
    await sweep.cell(
        svc + "ArchiveDocument",
        lambda: stub.ArchiveDocument(archive, metadata=md, timeout=10),
        sent=[R.Document(name=target)],
        stamps=doc_stamps,
        read=read_document(target),
    )
    delete = R.DeleteDocumentRequest(name=target, request_id=rid())
    await sweep.cell(
        svc + "DeleteDocument",
        lambda: stub.DeleteDocument(delete, metadata=md, timeout=10),
        sent=[R.Document(name=target)],
        stamps=doc_stamps,
        read=read_document(target),
    )

    # UpdateHealthProfile: one new item, and the blood group the patient recorded replaced.
    profile_name = f"{dossier}/healthProfile"
    change = R.HealthProfile(name=profile_name)
    change.conditions.add(
        category=R.CONDITION_CATEGORY_MEDICAL_HISTORY,
        code=R.CodedConcept(code="J45", display=f"asthme by {sweep.card}"),
    )
    change.blood_group.CopyFrom(R.BloodGroup(abo=R.ABO_GROUP_AB, rhesus=R.RHESUS_FACTOR_POSITIVE))
    update = R.UpdateHealthProfileRequest(health_profile=change, request_id=rid())
    get_profile = R.GetHealthProfileRequest(name=profile_name)
    await sweep.cell(
        svc + "UpdateHealthProfile",
        lambda: stub.UpdateHealthProfile(update, metadata=md, timeout=10),
        sent=[change],
        stamps=_profile_stamps(me),
        read=lambda _: lambda: stub.GetHealthProfile(get_profile, metadata=md, timeout=10),
    )

    # UpdateAdvanceDirectives: a new revision, read back by whoever may write it.
    directives = R.AdvanceDirectives(
        name=f"{dossier}/advanceDirectives", written=True, summary=f"written by {sweep.card}"
    )
    update_directives = R.UpdateAdvanceDirectivesRequest(
        advance_directives=directives, request_id=rid()
    )
    get_directives = R.GetAdvanceDirectivesRequest(name=directives.name)
    await sweep.cell(
        svc + "UpdateAdvanceDirectives",
        lambda: stub.UpdateAdvanceDirectives(update_directives, metadata=md, timeout=10),
        sent=[directives],
        stamps=me.stamps("name", "revision_id", "etag", "revision_create_time"),
        read=lambda _: lambda: stub.GetAdvanceDirectives(get_directives, metadata=md, timeout=10),
    )

    vaccination = R.Vaccination(
        vaccine=R.CodedConcept(code="J07BB02", display="Grippe"),
        administration_date=R.Date(year=2024, month=10, day=15),
        lot_number=f"L-{sweep.card}",
        note=f"given by {sweep.card}",
    )
    create_vaccination = R.CreateVaccinationRequest(
        parent=dossier, vaccination=vaccination, request_id=rid()
    )

    def read_vaccination(answer: Message | None) -> Read | None:
        if answer is None:
            return None
        name = getattr(answer, "name", "")
        request = R.ListVaccinationsRequest(parent=dossier, page_size=200)

        async def read() -> Message | None:
            listed = await stub.ListVaccinations(request, metadata=md, timeout=10)
            return next((v for v in listed.vaccinations if v.name == name), None)

        return read

    await sweep.cell(
        svc + "CreateVaccination",
        lambda: stub.CreateVaccination(create_vaccination, metadata=md, timeout=10),
        sent=[vaccination],
        stamps=vaccination_stamps(me),
        read=read_vaccination,
    )

    # The record's lifecycle.
    get_dossier = R.GetDossierRequest(name=dossier)

    def read_dossier(answer: Message | None) -> Read | None:
        def call() -> Awaitable[Message]:
            return stub.GetDossier(get_dossier, metadata=md, timeout=10)  # type: ignore[no-any-return]

        if answer is None:
            return call
        if getattr(answer, "state", 0) == R.DOSSIER_STATE_CLOSED:
            return None  # this write closed it: the read before is what the card could see
        # Consent learns of a reactivation from records' event: wait for it, bounded.
        return lambda: eventually(call, retry_on=(S.FAILED_PRECONDITION,))

    current = await patient.GetDossier(get_dossier, metadata=pmd, timeout=10)
    accept = R.AcceptTermsOfUseRequest(
        name=dossier, terms_version=current.current_terms_version, request_id=rid()
    )
    await sweep.cell(
        svc + "AcceptTermsOfUse",
        lambda: stub.AcceptTermsOfUse(accept, metadata=md, timeout=10),
        sent=[R.Dossier(name=dossier, accepted_terms_version=accept.terms_version)],
        stamps=dossier_stamps(me),
        read=read_dossier,
    )
    rules = consent_pb2_grpc.ConsentServiceStub(stack.patient_channel())
    list_rules = C.ListAccessRulesRequest(parent=dossier)
    close = R.CloseDossierRequest(
        name=dossier,
        reason=R.CLOSE_REASON_OTHER,
        comment=f"closed by {sweep.card}",
        request_id=rid(),
    )
    closed = await sweep.cell(
        svc + "CloseDossier",
        lambda: stub.CloseDossier(close, metadata=md, timeout=10),
        sent=[R.Dossier(name=dossier, close_reason=close.reason, close_comment=close.comment)],
        stamps=dossier_stamps(me),
        read=read_dossier,
    )
    if closed is None:
        await patient.CloseDossier(
            R.CloseDossierRequest(
                name=dossier, reason=R.CLOSE_REASON_PATIENT_REQUEST, request_id=rid()
            ),
            metadata=pmd,
        )
    await until_refused(
        lambda: rules.ListAccessRules(list_rules, metadata=pmd, timeout=10), S.FAILED_PRECONDITION
    )
    reactivate = R.ReactivateDossierRequest(
        name=dossier,
        consent=R.ConsentAttestation(consent_obtained=True, information_given=True),
        request_id=rid(),
    )
    reactivated = await sweep.cell(
        svc + "ReactivateDossier",
        lambda: stub.ReactivateDossier(reactivate, metadata=md, timeout=10),
        sent=[R.Dossier(name=dossier)],
        stamps=dossier_stamps(me),
        read=read_dossier,
    )
    if reactivated is None:
        await patient.ReactivateDossier(
            R.ReactivateDossierRequest(name=dossier, request_id=rid()), metadata=pmd
        )
    await eventually(
        lambda: rules.ListAccessRules(list_rules, metadata=pmd, timeout=10),
        retry_on=(S.FAILED_PRECONDITION,),
    )

    # A record of its own for CreateDossier: a fresh INS (the patient: their own).
    fresh = make_ins()
    channel = {"patient": "online", "desk": "desk"}.get(sweep.card, "professional")
    creation = create_request(fresh, channel=channel)
    creator_md = bearer(stack.token(fresh)) if sweep.card == "patient" else md
    sent_dossier = R.Dossier()
    sent_dossier.CopyFrom(creation.dossier)
    await sweep.cell(
        svc + "CreateDossier",
        lambda: stub.CreateDossier(creation, metadata=creator_md, timeout=15),
        sent=[sent_dossier],
        stamps=dossier_stamps(me),
        read=lambda answer: (
            None
            if answer is None
            else lambda: stub.GetDossier(
                R.GetDossierRequest(name=getattr(answer, "name", "")),
                metadata=creator_md,
                timeout=10,
            )
        ),
    )


async def _consent_cells(sweep: Sweep, seeds: Seeds) -> None:
    me, dossier, md = sweep.me, sweep.dossier, sweep.md
    stub = consent_pb2_grpc.ConsentServiceStub(sweep.channel())
    svc = "ConsentService/"
    stamps = rule_stamps(me)

    def read_rule(answer: Message | None) -> Read | None:
        if answer is None:
            return None
        name = getattr(answer, "name", "")
        request = C.ListAccessRulesRequest(parent=dossier, show_inactive=True, page_size=200)

        async def read() -> Message | None:
            listed = await stub.ListAccessRules(request, metadata=md, timeout=10)
            return next((r for r in listed.access_rules if r.name == name), None)

        return read

    is_patient = sweep.card == "patient"
    grantee = rpps("nurse") if is_patient else (me.rpps or rpps("doctor"))
    care = None if is_patient else C.CareContext(consent_attested=True, note="en consultation")
    grant_request = C.GrantAccessRequest(
        parent=dossier, professional_rpps=grantee, care_context=care, request_id=rid()
    )
    granted = await sweep.cell(
        svc + "GrantAccess",
        lambda: stub.GrantAccess(grant_request, metadata=md, timeout=10),
        sent=[C.AccessRule(professional_rpps=grantee, grant=C.GrantDetails(care_context=care))],
        stamps=stamps,
        read=read_rule,
    )
    revoked = granted.name if granted is not None and is_patient else seeds.grant_rule
    revoke = C.RevokeAccessRequest(name=revoked, request_id=rid())
    await sweep.cell(
        svc + "RevokeAccess",
        lambda: stub.RevokeAccess(revoke, metadata=md, timeout=10),
        sent=[C.AccessRule(name=revoked)],
        stamps=stamps,
        read=read_rule,
    )
    blocked_rpps = rpps("dietitian")
    block = C.BlockProfessionalRequest(
        parent=dossier, professional_rpps=blocked_rpps, request_id=rid()
    )
    blocked = await sweep.cell(
        svc + "BlockProfessional",
        lambda: stub.BlockProfessional(block, metadata=md, timeout=10),
        sent=[C.AccessRule(professional_rpps=blocked_rpps)],
        stamps=stamps,
        read=read_rule,
    )
    lifted = blocked.name if blocked is not None else seeds.block_rule
    unblock = C.UnblockProfessionalRequest(name=lifted, request_id=rid())
    await sweep.cell(
        svc + "UnblockProfessional",
        lambda: stub.UnblockProfessional(unblock, metadata=md, timeout=10),
        sent=[C.AccessRule(name=lifted)],
        stamps=stamps,
        read=read_rule,
    )
    attending_rpps = rpps("doctor2") if is_patient else (me.rpps or rpps("doctor2"))
    attending = C.SetAttendingPhysicianRequest(
        name=dossier, professional_rpps=attending_rpps, request_id=rid()
    )
    await sweep.cell(
        svc + "SetAttendingPhysician",
        lambda: stub.SetAttendingPhysician(attending, metadata=md, timeout=10),
        sent=[C.AccessRule(professional_rpps=attending_rpps)],
        stamps=stamps,
        read=read_rule,
    )
    preferences = C.EmergencyPreferences(oppose_bris_de_glace=False, oppose_centre_15=False)
    emergency_preferences = C.SetEmergencyPreferencesRequest(
        name=dossier, preferences=preferences, request_id=rid()
    )
    await sweep.cell(
        svc + "SetEmergencyPreferences",
        lambda: stub.SetEmergencyPreferences(emergency_preferences, metadata=md, timeout=10),
        sent=[C.AccessRule(emergency_preferences=preferences)],
        stamps=stamps,
        read=read_rule,
    )
    centre_15 = sweep.card == "regulateur"
    details = C.EmergencyAccessDetails(
        mode=(
            principal_pb2.ACCESS_MODE_CENTRE_15
            if centre_15
            else principal_pb2.ACCESS_MODE_BRIS_DE_GLACE
        ),
        reason=(
            C.EMERGENCY_REASON_MEDICAL_REGULATION_CALL
            if centre_15
            else C.EMERGENCY_REASON_IMMEDIATE_VITAL_RISK
        ),
        justification="Patient inconscient aux urgences",
    )
    start = C.StartEmergencyAccessRequest(
        parent=dossier,
        mode=details.mode,
        reason=details.reason,
        justification=details.justification,
        request_id=rid(),
    )
    await sweep.cell(
        svc + "StartEmergencyAccess",
        lambda: stub.StartEmergencyAccess(start, metadata=md, timeout=10),
        sent=[C.AccessRule(emergency_access=details)],
        stamps=stamps,
        read=read_rule,
    )


async def _account_cells(sweep: Sweep) -> None:
    """notify, identity and history_feed: no read RPC but notify's, so stamps and what was sent."""
    stack, me, md, ins = sweep.stack, sweep.me, sweep.md, sweep.ins
    notify = notify_pb2_grpc.NotifyServiceStub(sweep.channel())
    name = f"patients/{ins}/contactPreferences"
    get_preferences = N.GetContactPreferencesRequest(name=name)
    preferences = N.ContactPreferences(name=name, email="patient@exemple.fr")
    set_preferences = N.SetContactPreferencesRequest(
        contact_preferences=preferences, request_id=rid()
    )
    read_preferences: Callable[[Message | None], Read] = lambda _: (  # noqa: E731
        lambda: notify.GetContactPreferences(get_preferences, metadata=md, timeout=10)
    )
    await sweep.cell(
        "NotifyService/SetContactPreferences",
        lambda: notify.SetContactPreferences(set_preferences, metadata=md, timeout=10),
        sent=[preferences],
        stamps=me.stamps("name", "update_time"),
        read=read_preferences,
    )
    await sweep.cell(
        "NotifyService/GetContactPreferences",
        lambda: notify.GetContactPreferences(get_preferences, metadata=md, timeout=10),
        stamps=me.stamps("name", "update_time"),
        read=read_preferences,
    )
    listing = N.ListNotificationsRequest(parent=f"patients/{ins}")
    await sweep.cell(
        "NotifyService/ListNotifications",
        lambda: notify.ListNotifications(listing, metadata=md, timeout=10),
        stamps={},
        read=lambda _: lambda: notify.ListNotifications(listing, metadata=md, timeout=10),
    )

    identity = identity_pb2_grpc.IdentityServiceStub(sweep.channel())
    id_md = bearer(await _sign_up(stack, ins)) if sweep.card == "patient" else md
    issue = ID.IssueCreationCodeRequest(request_id=rid(), ins=make_ins())
    await sweep.cell(
        "IdentityService/IssueCreationCode",
        lambda: identity.IssueCreationCode(issue, metadata=id_md, timeout=10),
        stamps=me.stamps("creation_code", "expire_time"),
    )
    letter = ID.IssueActivationLetterRequest(request_id=rid(), ins=make_ins())
    await sweep.cell(
        "IdentityService/IssueActivationLetter",
        lambda: identity.IssueActivationLetter(letter, metadata=id_md, timeout=10),
        stamps=me.stamps("pdf", "media_type", "file_name", "expire_time"),
    )
    change = ID.ChangePasswordRequest(
        request_id=rid(), current_password=PASSWORD, new_password=PASSWORD + "-new"
    )
    await sweep.cell(
        "IdentityService/ChangePassword",
        lambda: identity.ChangePassword(change, metadata=id_md, timeout=15),
        stamps=me.stamps("account", "revoked_sessions"),
    )
    logout = ID.LogoutRequest(request_id=rid())
    await sweep.cell(
        "IdentityService/Logout",
        lambda: identity.Logout(logout, metadata=id_md, timeout=10),
        stamps=me.stamps("session"),
    )

    feed = history_pb2_grpc.HistoryFeedServiceStub(sweep.channel())
    lines = list(Generator(seed=7, patients=1, prefix=f"W{uuid.uuid4().hex[:8]}-").lines(2))
    batch = history_pb2.IngestClaimsRequest(lines=lines, request_id=rid())

    async def ingest() -> Message:
        call = feed.IngestClaims(metadata=md, timeout=15)
        await call.write(batch)
        await call.done_writing()
        answer: Message = await call
        return answer

    await sweep.cell(
        "HistoryFeedService/IngestClaims",
        ingest,
        stamps=me.stamps(
            "accepted_count",
            "duplicate_count",
            "rejected_count",
            "batch_count",
            "ingest_id",
            "rejections",
        ),
    )


@pytest.mark.parametrize("card", CARDS)
async def test_write_answers_hold_no_more_than_the_cards_reads(stack: LiveStack, card: str) -> None:
    dossier, ins = await new_record(stack)
    stem = card.partition("+")[0]
    fields = pki.DEMO_CARDS.get(stem) or EXTRA_CARDS.get(stem)
    me = Me(card, fields.rpps if fields is not None and fields.kind == "professional" else "")
    seeds = await _seed(stack, card, dossier, ins)
    if card.endswith("+grant"):
        await grant(stack, dossier, ins, stem)
    md = patient_md(stack, ins) if card == "patient" else ()
    sweep = Sweep(stack, card, me, dossier, ins, md)
    await _records_cells(sweep, seeds)
    await _consent_cells(sweep, seeds)
    await _account_cells(sweep)

    assert sweep.leaks == [], "\n".join(sweep.leaks)
    expected = {method for method, cards in TABLE.items() if card in cards}
    assert sweep.answered == expected, {
        "answered, table says refused": sorted(sweep.answered - expected),
        "refused, table says answered": {
            m: sweep.refused.get(m) for m in sorted(expected - sweep.answered)
        },
    }
    assert set(sweep.refused) | sweep.answered == set(TABLE)


async def test_empty_profile_update_without_grant_answers_a_receipt(stack: LiveStack) -> None:
    """The reported case: refused GetHealthProfile, the empty update answered everything."""
    dossier, ins = await new_record(stack)
    await _seed(stack, "doctor", dossier, ins)
    doctor = records_pb2_grpc.RecordsServiceStub(stack.card_channel("doctor"))
    name = f"{dossier}/healthProfile"
    await expect(doctor.GetHealthProfile(R.GetHealthProfileRequest(name=name)), S.NOT_FOUND)
    answer = await doctor.UpdateHealthProfile(
        R.UpdateHealthProfileRequest(health_profile=R.HealthProfile(name=name), request_id=rid()),
        timeout=10,
    )
    assert [f.name for f, _ in answer.ListFields()] == ["name", "update_time", "etag"]
    assert answer.name == name


async def test_a_vaccination_the_record_holds_is_no_oracle_without_grant(
    stack: LiveStack,
) -> None:
    """ALREADY_EXISTS told a writer without a grant which vaccine, date and lot the patient
    had; it now speaks only of the writer's own entries."""
    dossier, ins = await new_record(stack)
    patient = records_pb2_grpc.RecordsServiceStub(stack.patient_channel())
    given = R.Vaccination(
        vaccine=R.CodedConcept(code="J07BM01", display="HPV"),
        administration_date=R.Date(year=2021, month=6, day=1),
        lot_number="L9",
    )
    md = patient_md(stack, ins)
    await patient.CreateVaccination(
        R.CreateVaccinationRequest(parent=dossier, vaccination=given, request_id=rid()),
        metadata=md,
    )
    doctor = records_pb2_grpc.RecordsServiceStub(stack.card_channel("doctor2"))
    same = R.CreateVaccinationRequest(parent=dossier, vaccination=given, request_id=rid())
    mine = await doctor.CreateVaccination(same, timeout=10)
    assert mine.professional.rpps == rpps("doctor2")
    again = R.CreateVaccinationRequest(parent=dossier, vaccination=given, request_id=rid())
    await expect(doctor.CreateVaccination(again, timeout=10), S.ALREADY_EXISTS)
    twice = R.CreateVaccinationRequest(parent=dossier, vaccination=given, request_id=rid())
    await expect(patient.CreateVaccination(twice, metadata=md), S.ALREADY_EXISTS)
