"""French one-time code messages.

They hold the code and how long it stays valid, and nothing else: no name
(the mailbox or phone may be shared), no medical content, no link (phishing
messages imitate links; a code-only message teaches patients to expect none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dmp.notify.v1 import notify_pb2

PARIS = ZoneInfo("Europe/Paris")
DEFAULT_VALIDITY = timedelta(minutes=5)


@dataclass(frozen=True)
class EmailText:
    subject: str
    body: str


_PURPOSE: dict[int, str] = {
    notify_pb2.CODE_PURPOSE_LOGIN: "de connexion",
    notify_pb2.CODE_PURPOSE_RECOVERY: "de récupération de compte",
    notify_pb2.CODE_PURPOSE_ACTIVATION: "d'activation",
}

_EMAIL_BODY = """Bonjour,

Voici votre code {label} au DMP (Dossier Médical Partagé) :

    {code}

Ce code est valable {validity}, jusqu'à {until} (heure de Paris). Il ne peut servir qu'une fois.

Ne communiquez ce code à personne : ni le DMP, ni l'Assurance Maladie, ni un professionnel \
de santé ne vous le demanderont jamais.

Si vous n'êtes pas à l'origine de cette demande, ignorez ce message ; par précaution, \
changez votre mot de passe.

Ce message est envoyé automatiquement, merci de ne pas y répondre.
"""

_SMS_BODY = "DMP : votre code {label} est {code}. Valable {validity}. Ne le communiquez à personne."


def validity_minutes(expire_time: datetime | None, now: datetime) -> int:
    """Whole minutes left, rounded up, at least one."""
    left = (expire_time - now) if expire_time is not None else DEFAULT_VALIDITY
    return max(1, math.ceil(left.total_seconds() / 60))


def _validity(minutes: int, short: bool = False) -> str:
    if minutes > 120:  # an activation code lives hours or days: whole hours read better
        hours = math.ceil(minutes / 60)
        return f"{hours} h" if short else f"{hours} heures"
    if short:
        return f"{minutes} min"
    return f"{minutes} minute" + ("s" if minutes > 1 else "")


def _until(expire_time: datetime | None, now: datetime) -> str:
    moment = (expire_time or now + DEFAULT_VALIDITY).astimezone(PARIS)
    time = f"{moment.hour:02d} h {moment.minute:02d}"
    if moment.date() != now.astimezone(PARIS).date():
        return f"{moment.day:02d}/{moment.month:02d}/{moment.year} {time}"
    return time


def one_time_code_email(
    purpose: int, code: str, expire_time: datetime | None, now: datetime
) -> EmailText:
    """Subject and plain-text body of the e-mail carrying `code`."""
    label = _PURPOSE[purpose]
    minutes = validity_minutes(expire_time, now)
    return EmailText(
        subject=f"Votre code {label} au DMP",
        body=_EMAIL_BODY.format(
            label=label,
            code=code,
            validity=_validity(minutes),
            until=_until(expire_time, now),
        ),
    )


def one_time_code_sms(purpose: int, code: str, expire_time: datetime | None, now: datetime) -> str:
    """One SMS segment: the code, its purpose and its validity."""
    label = _PURPOSE[purpose]
    minutes = validity_minutes(expire_time, now)
    return _SMS_BODY.format(label=label, code=code, validity=_validity(minutes, short=True))


def known_purpose(purpose: int) -> bool:
    return purpose in _PURPOSE
