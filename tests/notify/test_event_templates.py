"""Event message templates and channel choice, without I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dmp.notify.v1 import notify_pb2 as K
from services.notify import event_templates as t
from services.notify.intake import channels_for
from tests.notify.test_event_notifications import assert_no_medical_content

CASES = [
    (K.NOTIFICATION_KIND_DOCUMENT_ADDED, t.DEFAULT),
    (K.NOTIFICATION_KIND_FIRST_ACCESS, t.DEFAULT),
    (K.NOTIFICATION_KIND_EMERGENCY_ACCESS, t.DEFAULT),
    (K.NOTIFICATION_KIND_DOSSIER_LIFECYCLE, t.CREATED),
    (K.NOTIFICATION_KIND_DOSSIER_LIFECYCLE, t.CLOSED),
    (K.NOTIFICATION_KIND_DOSSIER_LIFECYCLE, t.REACTIVATED),
    (K.NOTIFICATION_KIND_ACCESS_RULES_CHANGED, t.DEFAULT),
]


@pytest.mark.parametrize(("kind", "variant"), CASES)
@pytest.mark.parametrize("audience", ["", "." + t.REPRESENTATIVE])
def test_every_message_is_french_dated_and_free_of_medical_content(
    kind: int, variant: str, audience: str
) -> None:
    when = datetime(2025, 7, 14, 8, 5, tzinfo=UTC)
    urgent = kind == K.NOTIFICATION_KIND_EMERGENCY_ACCESS
    mail = t.email(kind, variant + audience, when, urgent=urgent)
    sms = t.sms(kind, variant + audience, urgent=urgent)
    assert "14/07/2025 à 10 h 05" in mail.body  # Paris time
    assert "Ce message ne contient aucune information médicale" in mail.body
    assert "http" not in mail.body
    assert "http" not in sms
    assert_no_medical_content(mail.subject + mail.body + sms)
    assert len(sms) <= 160
    assert mail.subject.startswith("URGENT") == urgent
    assert sms.startswith("DMP URGENT") == urgent
    if audience:
        assert "que vous représentez" in mail.body
        assert "votre DMP" not in mail.subject


def _choices(**kinds: list[str]) -> str:
    return json.dumps(kinds)


def test_channels_follow_choices_and_defaults() -> None:
    doc = K.NOTIFICATION_KIND_DOCUMENT_ADDED
    assert channels_for(doc, "a@b.fr", "+33612345678", "{}") == ["email"]
    assert channels_for(doc, None, "+33612345678", "{}") == ["sms"]
    assert channels_for(doc, None, None, "{}") == []
    both = _choices(NOTIFICATION_KIND_DOCUMENT_ADDED=["CHANNEL_EMAIL", "CHANNEL_SMS"])
    assert channels_for(doc, "a@b.fr", "+33612345678", both) == ["email", "sms"]
    silenced = _choices(NOTIFICATION_KIND_DOCUMENT_ADDED=[])
    assert channels_for(doc, "a@b.fr", "+33612345678", silenced) == []
    # Emergencies: every channel the patient has, whatever the choices.
    emergency = K.NOTIFICATION_KIND_EMERGENCY_ACCESS
    email_only = _choices(NOTIFICATION_KIND_EMERGENCY_ACCESS=["CHANNEL_EMAIL"])
    assert channels_for(emergency, "a@b.fr", "+33612345678", email_only) == ["email", "sms"]
