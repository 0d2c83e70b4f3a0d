"""Notices that name the professional (issue 16): templates and the resolution from events,
without I/O beyond the directory client's own cache."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dmp.authz.v1 import principal_pb2
from dmp.consent.v1 import events_pb2 as consent_events
from dmp.notify.v1 import notify_pb2 as K
from kit import codes
from kit.directory import ProfessionalInfo
from services.notify import event_templates as t
from services.notify import naming

WHEN = datetime(2025, 7, 14, 8, 5, tzinfo=UTC)
ROUX = naming.Actor(
    display_name="Marie Roux",
    profession_code="10",
    profession="Médecin",
    specialty="Psychiatrie (SM)",
)
VIA = naming.Actor(
    display_name="Marie Roux",
    profession_code="10",
    profession="Médecin",
    specialty="Oncologie médicale (SM)",
    establishment="Hôpital Nord",
)
NAMED_KINDS = [
    K.NOTIFICATION_KIND_FIRST_ACCESS,
    K.NOTIFICATION_KIND_EMERGENCY_ACCESS,
    K.NOTIFICATION_KIND_ACCESS_RULES_CHANGED,
]


def _no_document_words(text: str) -> None:
    lower = text.lower()
    for table in ("document_classes", "document_types", "specialties"):
        for entry in codes.table(table).values():
            label = entry.label.lower()
            if len(label) > 3:
                assert label not in lower, label


def _urgent(kind: int) -> bool:
    return kind == K.NOTIFICATION_KIND_EMERGENCY_ACCESS


@pytest.mark.parametrize("kind", NAMED_KINDS)
def test_named_professional_in_email_and_sms_without_specialty(kind: int) -> None:
    mail = t.email(kind, t.DEFAULT, WHEN, urgent=_urgent(kind), actor=ROUX)
    sms = t.sms(kind, t.DEFAULT, urgent=_urgent(kind), actor=ROUX)
    assert "le Dr Marie Roux, médecin" in mail.body.replace("Le Dr", "le Dr")
    assert "14/07/2025 à 10 h 05" in mail.body
    assert "via" not in mail.body
    assert "Psychiatrie" not in mail.body + sms + mail.subject
    assert "Roux" not in mail.subject  # the subject line shows in lists and lock screens
    assert "Marie Roux" in sms
    assert "médecin" not in sms.lower()  # SMS: the name at most
    assert len(sms) <= 160
    _no_document_words(mail.subject + mail.body + sms)


def test_first_access_sentence() -> None:
    mail = t.email(K.NOTIFICATION_KIND_FIRST_ACCESS, t.DEFAULT, WHEN, urgent=False, actor=VIA)
    assert (
        "Le Dr Marie Roux, médecin, a accédé pour la première fois à votre Dossier Médical "
        "Partagé (DMP) le 14/07/2025 à 10 h 05 via Hôpital Nord."
    ) in mail.body
    assert "via Hôpital Nord." in mail.body
    assert "Oncologie" not in mail.body
    sms = t.sms(K.NOTIFICATION_KIND_FIRST_ACCESS, t.DEFAULT, urgent=False, actor=VIA)
    assert "Hôpital" not in sms


def test_rules_changed_by_a_professional_through_an_establishment() -> None:
    mail = t.email(
        K.NOTIFICATION_KIND_ACCESS_RULES_CHANGED, t.DEFAULT, WHEN, urgent=False, actor=VIA
    )
    assert "le 14/07/2025 à 10 h 05 par le Dr Marie Roux, médecin, via Hôpital Nord." in mail.body


def test_other_professions_and_plain_wording() -> None:
    pharmacist = naming.Actor("Paul Durand", "21", "Pharmacien")
    mail = t.email(
        K.NOTIFICATION_KIND_FIRST_ACCESS, t.DEFAULT, WHEN, urgent=False, actor=pharmacist
    )
    assert "Paul Durand, pharmacien, a accédé pour la première fois" in mail.body
    nurse = naming.Actor("Léa Petit", "69", "Infirmier psychiatrique")
    mail = t.email(K.NOTIFICATION_KIND_FIRST_ACCESS, t.DEFAULT, WHEN, urgent=False, actor=nurse)
    assert "Léa Petit, infirmier, a accédé" in mail.body
    assert "psychiatrique" not in mail.body
    # The dev directory keeps the title in the name: not said twice.
    titled = naming.Actor("Dr Anne Morel", "10", "Médecin")
    assert titled.who() == "le Dr Anne Morel, médecin"


@pytest.mark.parametrize("kind", NAMED_KINDS)
def test_unknown_professional_keeps_the_generic_wording(kind: int) -> None:
    generic = t.email(kind, t.DEFAULT, WHEN, urgent=_urgent(kind))
    for actor in (None, naming.Actor()):
        assert t.email(kind, t.DEFAULT, WHEN, urgent=_urgent(kind), actor=actor) == generic
        assert t.sms(kind, t.DEFAULT, urgent=_urgent(kind), actor=actor) == t.sms(
            kind, t.DEFAULT, urgent=_urgent(kind)
        )


def test_unknown_professional_through_an_establishment_names_the_establishment() -> None:
    actor = naming.Actor(establishment="Hôpital Nord")
    mail = t.email(K.NOTIFICATION_KIND_EMERGENCY_ACCESS, t.DEFAULT, WHEN, urgent=True, actor=actor)
    assert "Un professionnel de santé a accédé" in mail.body
    assert "via Hôpital Nord." in mail.body


def test_representatives_are_told_who_too() -> None:
    variant = t.DEFAULT + "." + t.REPRESENTATIVE
    mail = t.email(K.NOTIFICATION_KIND_FIRST_ACCESS, variant, WHEN, urgent=False, actor=ROUX)
    assert "le DMP d'une personne que vous représentez" in mail.body
    assert "Le Dr Marie Roux, médecin, a accédé" in mail.body


def test_other_kinds_name_nobody() -> None:
    for kind, variant in [
        (K.NOTIFICATION_KIND_DOCUMENT_ADDED, t.DEFAULT),
        (K.NOTIFICATION_KIND_DOSSIER_LIFECYCLE, t.CREATED),
        (K.NOTIFICATION_KIND_ACTIVATION_REISSUED, t.DEFAULT),
    ]:
        mail = t.email(kind, variant, WHEN, urgent=False, actor=VIA)
        assert "Roux" not in mail.body
        assert "Hôpital" not in mail.body
        assert "Roux" not in t.sms(kind, variant, urgent=False, actor=VIA)


def _access(**kw: object) -> bytes:
    event = consent_events.AccessRecorded(
        event_id="e1",
        dossier="dossiers/d1",
        principal_kind=principal_pb2.PRINCIPAL_KIND_PROFESSIONAL,
        principal_subject="10000000017",
        first_access=True,
        **kw,  # type: ignore[arg-type]
    )
    return event.SerializeToString()


def test_the_professional_of_each_event() -> None:
    access = "dmp.consent.access.recorded"
    assert naming.professional_of(access, _access()) == ("10000000017", "")
    assert naming.professional_of(access, _access(establishment_name="Hôpital Nord")) == (
        "10000000017",
        "Hôpital Nord",
    )
    assert naming.professional_of("dmp.notify.replay." + access, _access()) == (
        "10000000017",
        "",
    )
    # A support agent's reissue names no professional.
    assert naming.professional_of(access, _access(activation_reissued=True)) == ("", "")
    changed = consent_events.ConsentChanged(
        event_id="e2", dossier="dossiers/d1", access_rule="r", actor_rpps="10000000025"
    ).SerializeToString()
    assert naming.professional_of("dmp.consent.changed", changed) == ("10000000025", "")
    assert naming.professional_of(access, b"\xff\xff") == ("", "")
    assert naming.professional_of(access, None) == ("", "")
    assert naming.professional_of("dmp.records.document.added", b"") == ("", "")


async def test_resolution_with_and_without_the_directory() -> None:
    info = ProfessionalInfo("10000000017", "Claire Martin", "10", "SM53")
    got = naming.actor_from("10000000017", "Hôpital Nord", {"10000000017": info})
    assert (got.display_name, got.profession, got.establishment) == (
        "Claire Martin",
        "Médecin",
        "Hôpital Nord",
    )
    assert got.specialty == codes.table("specialties")["SM53"].label
    assert naming.actor_from("10000000017", "", {}) == naming.Actor()
    # No directory configured: generic, never an error.
    assert await naming.resolve(None, "dmp.consent.access.recorded", _access()) == naming.Actor()
