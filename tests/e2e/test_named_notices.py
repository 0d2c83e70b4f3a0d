"""Notices name the professional (issue 16), through the launcher-started gateway: the e-mail
of a professional's first access names them and their profession (never their specialty,
shown in the patient's space only), and an access through an establishment's system names the
establishment. E-mails from the dev mail sink; the in-app list read by the patient."""

from __future__ import annotations

from email.message import EmailMessage

from dmp.notify.v1 import notify_pb2
from dmp_dev.testing.stack import LiveStack
from kit import codes
from tests.e2e.helpers import R, grant, mails_to, new_record, records
from tests.e2e.test_journey_hospital import DAVID, HOSPITAL
from tests.e2e.test_journey_hospital import _as_david as as_david
from tests.e2e.test_journey_hospital import _care_grant as care_grant
from tests.e2e.test_journey_hospital import _hospital as hospital_pair
from tests.e2e.test_patient_notices import assert_nothing_medical, new_email, settled, text_of
from tests.fixtures.records import make_ins
from tests.records.helpers import create_request
from tests.waits import until

N = notify_pb2


def _specialty(code: str) -> str:
    return codes.table("specialties")[code].label


def _mails_saying(stack: LiveStack, email: str, words: str) -> list[EmailMessage]:
    return [m for m in mails_to(stack.mail_dir, email) if words in text_of(m)]


async def _record_with_email(stack: LiveStack) -> tuple[str, str, str]:
    ins, email = make_ins(), new_email()
    request = create_request(ins)
    request.dossier.contact.email = email
    dossier, _ = await new_record(stack, ins, request)
    return dossier, ins, email


async def test_first_access_email_names_the_professional_and_their_profession(
    stack: LiveStack,
) -> None:
    dossier, ins, email = await _record_with_email(stack)
    await grant(stack, dossier, ins, "doctor2")  # the patient's own change: not notified
    doctor = records(stack.card_channel("doctor2"))
    await doctor.ListDocuments(R.ListDocumentsRequest(parent=dossier), timeout=10)
    await until(
        lambda: len(_mails_saying(stack, email, "pour la première fois")) == 1,
        "first-access e-mail",
    )
    (mail,) = _mails_saying(stack, email, "pour la première fois")
    text = text_of(mail)
    # tests/fixtures/stack.py: doctor2 is "Dr Anne Morel", médecin, SM53.
    assert "Le Dr Anne Morel, médecin, a accédé pour la première fois" in text
    assert "via" not in text  # her own card, no establishment
    assert _specialty("SM53").lower() not in text.lower()
    assert "Morel" not in str(mail["Subject"])
    assert_nothing_medical(text, ins, dossier, "10000000116")

    listed = await settled(stack, ins)
    (entry,) = [n for n in listed if n.kind == N.NOTIFICATION_KIND_FIRST_ACCESS]
    assert entry.status == N.DELIVERY_STATUS_SENT
    assert (
        entry.professional_display_name,
        entry.professional_profession,
        entry.professional_specialty,
        entry.establishment_display_name,
    ) == ("Dr Anne Morel", "Médecin", _specialty("SM53"), "")
    (created,) = [n for n in listed if n.kind == N.NOTIFICATION_KIND_DOSSIER_LIFECYCLE]
    assert created.professional_display_name == ""  # a desk's creation names nobody


async def test_access_through_an_establishment_names_the_establishment(stack: LiveStack) -> None:
    dossier, ins, email = await _record_with_email(stack)
    pair = hospital_pair(stack)
    # The hospital's doctor records the patient's consent (a change by a professional: told,
    # naming him), then reads the record through the hospital's system (first access).
    await care_grant(stack, pair, ins, as_david(pair), DAVID)
    his_records = records(stack.card_channel(pair))
    await his_records.ListDocuments(
        R.ListDocumentsRequest(parent=dossier), metadata=as_david(pair), timeout=15
    )
    await until(
        lambda: len(_mails_saying(stack, email, "pour la première fois")) == 1,
        "first-access e-mail",
    )
    await until(
        lambda: len(_mails_saying(stack, email, "règles d'accès")) == 1, "rules-changed e-mail"
    )
    (first,) = _mails_saying(stack, email, "pour la première fois")
    text = " ".join(text_of(first).split())
    assert "Le Dr Charles DAVID, médecin, a accédé pour la première fois" in text
    assert f"via {HOSPITAL.name}." in text
    assert _specialty("SM27").lower() not in text.lower()
    assert_nothing_medical(text, ins, dossier, DAVID, HOSPITAL.finess)
    (rules,) = _mails_saying(stack, email, "règles d'accès")
    assert "par le Dr Charles DAVID, médecin." in " ".join(text_of(rules).split())

    listed = await settled(stack, ins)
    (entry,) = [n for n in listed if n.kind == N.NOTIFICATION_KIND_FIRST_ACCESS]
    assert (
        entry.professional_display_name,
        entry.professional_profession,
        entry.professional_specialty,
        entry.establishment_display_name,
    ) == ("Charles DAVID", "Médecin", _specialty("SM27"), HOSPITAL.name)
