"""The one-time code messages: French, the code and its validity, nothing personal."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from dmp.notify.v1 import notify_pb2
from services.notify import templates

NOW = datetime(2026, 1, 15, 13, 27, 10, tzinfo=UTC)
PURPOSES = [notify_pb2.CODE_PURPOSE_LOGIN, notify_pb2.CODE_PURPOSE_RECOVERY]
# Words that would reveal health data or identity if they ever slipped into a template.
FORBIDDEN = [
    "diagnostic",
    "maladie ",
    "traitement",
    "ordonnance",
    "analyse",
    "résultat",
    "document",
    "médecin",
    "hôpital",
    "allergie",
    "vaccin",
    "madame",
    "monsieur",
    "http",
    "www",
]


@pytest.mark.parametrize("purpose", PURPOSES)
def test_email_holds_the_code_and_validity_in_french(purpose: int) -> None:
    text = templates.one_time_code_email(purpose, "093817", NOW + timedelta(minutes=5), NOW)
    assert "093817" in text.body
    assert "valable 5 minutes" in text.body
    assert "jusqu'à 14 h 32 (heure de Paris)" in text.body  # 13:32 UTC is 14:32 in January
    assert text.body.startswith("Bonjour,")
    assert "Ne communiquez ce code à personne" in text.body
    assert "093817" not in text.subject
    assert text.subject.startswith("Votre code ")
    assert re.findall(r"[0-9]{6}", text.body) == ["093817"]


@pytest.mark.parametrize("purpose", PURPOSES)
def test_sms_is_one_short_segment(purpose: int) -> None:
    text = templates.one_time_code_sms(purpose, "555000", NOW + timedelta(minutes=5), NOW)
    assert "555000" in text
    assert "Valable 5 min." in text
    assert len(text) <= 160
    assert text.startswith("DMP : votre code")


def test_purposes_have_their_own_wording() -> None:
    login = templates.one_time_code_email(notify_pb2.CODE_PURPOSE_LOGIN, "111111", None, NOW)
    recovery = templates.one_time_code_email(notify_pb2.CODE_PURPOSE_RECOVERY, "111111", None, NOW)
    assert "de connexion" in login.subject
    assert "de récupération de compte" in recovery.subject
    assert "récupération" not in login.body


@pytest.mark.parametrize("purpose", PURPOSES)
def test_no_medical_or_personal_words(purpose: int) -> None:
    email = templates.one_time_code_email(purpose, "123456", None, NOW)
    sms = templates.one_time_code_sms(purpose, "123456", None, NOW)
    for text in (email.subject, email.body, sms):
        lowered = text.lower()
        for word in FORBIDDEN:
            assert word not in lowered, word


@pytest.mark.parametrize(
    ("left", "minutes"),
    [
        (timedelta(minutes=5), 5),
        (timedelta(minutes=4, seconds=1), 5),
        (timedelta(seconds=30), 1),
        (timedelta(minutes=1), 1),
        (timedelta(minutes=10), 10),
    ],
)
def test_validity_is_rounded_up(left: timedelta, minutes: int) -> None:
    assert templates.validity_minutes(NOW + left, NOW) == minutes


def test_without_expire_time_the_default_validity_is_shown() -> None:
    email = templates.one_time_code_email(notify_pb2.CODE_PURPOSE_LOGIN, "123456", None, NOW)
    assert "valable 5 minutes" in email.body


def test_one_minute_is_singular() -> None:
    email = templates.one_time_code_email(
        notify_pb2.CODE_PURPOSE_LOGIN, "123456", NOW + timedelta(seconds=40), NOW
    )
    assert "valable 1 minute," in email.body
