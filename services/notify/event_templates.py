"""French messages telling a patient that something happened on their record.

They say *that* something happened, when, who did it and where to look: never a
document title, class or type, never a diagnosis or an identifier. A mailbox or a
phone is often shared, and an e-mail crosses relays we do not control. No link
either (as for codes: patients learn that real DMP messages carry none).

Who: a professional's access (first or emergency) and a rule change a professional
made name them when the directory knows them (services.notify.naming): the e-mail
gives the name, the profession and the establishment they acted through (« le Dr
Marie Roux, médecin, … via Hôpital Nord »), the SMS the name only, the subject line
nobody. Never the specialty (psychiatry, oncology... say something about the
patient's health to whoever shares the mailbox): it is shown in the patient's space
only. Unknown professional: the generic « un professionnel de santé ».
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dmp.notify.v1 import notify_pb2
from services.notify.naming import Actor
from services.notify.templates import PARIS, EmailText

# Variants of a kind (stored in notifications.variant).
CREATED = "created"
CLOSED = "closed"
REACTIVATED = "reactivated"
DEFAULT = "default"
# Audience suffix for a minor's legal representatives.
REPRESENTATIVE = "representative"


@dataclass(frozen=True)
class _Template:
    subject: str
    #: The fact, a sentence completing "{whose DMP}" (patient or representative wording).
    fact: str
    where: str
    sms: str
    #: With a named professional ({who}: « le Dr Marie Roux, médecin »; {via}: « via X » or "").
    named_fact: str = ""
    #: With a named professional, SMS ({name}: the name alone).
    named_sms: str = ""


_WHERE_DOCS = "Pour le consulter, connectez-vous à votre espace DMP, rubrique « Documents »."
_WHERE_HISTORY = (
    "Vous pouvez voir la date et l'origine de cet accès dans votre espace DMP, rubrique "
    "« Historique des accès ». Si vous ne le reconnaissez pas, vous pouvez y bloquer l'accès "
    "de ce professionnel."
)
_WHERE_RULES = (
    "Vous pouvez vérifier les autorisations en vigueur dans votre espace DMP, rubrique "
    "« Gestion des accès »."
)
_WHERE_SPACE = "Retrouvez le détail dans votre espace DMP."
_WHERE_DIRECTIVES = (
    "Vous pouvez les relire, avec leurs versions précédentes et l'auteur de chaque "
    "modification, dans votre espace DMP, rubrique « Directives anticipées ». Si vous n'êtes "
    "pas à l'origine de cette modification et ne la reconnaissez pas, contactez DMP Info Service."
)
_WHERE_VACCINATIONS = (
    "Le détail figure dans votre espace DMP, rubrique « Vaccinations ». Parlez-en à votre "
    "médecin, à votre pharmacien, à votre infirmier ou à votre sage-femme."
)

_TEMPLATES: dict[tuple[int, str], _Template] = {
    (notify_pb2.NOTIFICATION_KIND_DOCUMENT_ADDED, DEFAULT): _Template(
        subject="Un nouveau document est disponible dans votre DMP",
        fact="Un nouveau document a été ajouté à {dmp} le {when}.",
        where=_WHERE_DOCS,
        sms="DMP : un nouveau document a été ajouté à {dmp_short}. Consultez votre espace DMP.",
    ),
    (notify_pb2.NOTIFICATION_KIND_FIRST_ACCESS, DEFAULT): _Template(
        subject="Un professionnel de santé a accédé à votre DMP",
        fact="Un professionnel de santé a accédé pour la première fois à {dmp} le {when}.",
        where=_WHERE_HISTORY,
        sms="DMP : un professionnel de santé a accédé pour la première fois à {dmp_short}. "
        "Détails dans votre espace DMP.",
        named_fact="{Who} a accédé pour la première fois à {dmp} le {when}{via}.",
        named_sms="DMP : {name} a accédé pour la première fois à {dmp_short}. "
        "Détails dans votre espace DMP.",
    ),
    (notify_pb2.NOTIFICATION_KIND_EMERGENCY_ACCESS, DEFAULT): _Template(
        subject="URGENT : accès en urgence à votre DMP",
        fact="Un professionnel de santé a accédé à {dmp} en mode urgence le {when}.",
        where=_WHERE_HISTORY,
        sms="DMP URGENT : un professionnel de santé a accédé à {dmp_short} en mode urgence. "
        "Détails dans votre espace DMP.",
        named_fact="{Who} a accédé à {dmp} en mode urgence le {when}{via}.",
        named_sms="DMP URGENT : {name} a accédé à {dmp_short} en mode urgence. "
        "Détails dans votre espace DMP.",
    ),
    (notify_pb2.NOTIFICATION_KIND_DOSSIER_LIFECYCLE, CREATED): _Template(
        subject="Votre DMP a été créé",
        fact="{Dmp} a été créé le {when}.",
        where=_WHERE_SPACE,
        sms="DMP : {dmp_short} a été créé. Détails dans votre espace DMP.",
    ),
    (notify_pb2.NOTIFICATION_KIND_DOSSIER_LIFECYCLE, CLOSED): _Template(
        subject="Votre DMP a été fermé",
        fact="{Dmp} a été fermé le {when}. Il reste conservé et peut être réactivé.",
        where=_WHERE_SPACE,
        sms="DMP : {dmp_short} a été fermé. Détails dans votre espace DMP.",
    ),
    (notify_pb2.NOTIFICATION_KIND_DOSSIER_LIFECYCLE, REACTIVATED): _Template(
        subject="Votre DMP a été réactivé",
        fact="{Dmp} a été réactivé le {when}.",
        where=_WHERE_SPACE,
        sms="DMP : {dmp_short} a été réactivé. Détails dans votre espace DMP.",
    ),
    (notify_pb2.NOTIFICATION_KIND_ACCESS_RULES_CHANGED, DEFAULT): _Template(
        subject="Les règles d'accès à votre DMP ont changé",
        fact="Les règles d'accès à {dmp} ont été modifiées le {when} par une autre personne "
        "que vous.",
        where=_WHERE_RULES,
        sms="DMP : les règles d'accès à {dmp_short} ont été modifiées. "
        "Vérifiez-les dans votre espace DMP.",
        named_fact="Les règles d'accès à {dmp} ont été modifiées le {when} par {who_via}.",
        named_sms="DMP : les règles d'accès à {dmp_short} ont été modifiées par {name}. "
        "Vérifiez-les dans votre espace DMP.",
    ),
    (notify_pb2.NOTIFICATION_KIND_ACTIVATION_REISSUED, DEFAULT): _Template(
        subject="Votre accès en ligne au DMP a été réémis par DMP Info Service",
        fact="À la suite d'un appel à DMP Info Service le {when}, un nouveau code "
        "d'activation de l'accès en ligne à {dmp} a été émis. Votre mot de passe actuel "
        "cessera de fonctionner quand ce code sera utilisé.",
        where="Si vous n'êtes pas à l'origine de cet appel, contactez sans attendre DMP Info "
        "Service. Le détail figure dans votre espace DMP, rubrique « Historique des accès ».",
        sms="DMP URGENT : un nouveau code d'accès à {dmp_short} a été émis par DMP Info "
        "Service. Si ce n'est pas vous, appelez DMP Info Service.",
    ),
    (notify_pb2.NOTIFICATION_KIND_ADVANCE_DIRECTIVES_CHANGED, DEFAULT): _Template(
        subject="Directives anticipées modifiées dans votre DMP",
        fact="Les directives anticipées enregistrées dans {dmp} ont été modifiées le {when}.",
        where=_WHERE_DIRECTIVES,
        sms="DMP : les directives anticipées enregistrées dans {dmp_short} ont été modifiées. "
        "Détails dans votre espace DMP.",
    ),
    # The vaccine is never named: the message only says a booster is due, and when.
    (notify_pb2.NOTIFICATION_KIND_VACCINATION_REMINDER, DEFAULT): _Template(
        subject="Rappel de vaccination à prévoir (votre DMP)",
        fact="D'après {dmp}, un rappel de vaccination est à faire à partir du {day}.",
        where=_WHERE_VACCINATIONS,
        sms="DMP : un rappel de vaccination est à prévoir d'après {dmp_short}. "
        "Détails dans votre espace DMP.",
    ),
}

_FOOTER = (
    "Ce message ne contient aucune information médicale. Il est envoyé automatiquement, "
    "merci de ne pas y répondre. Le DMP ne vous demandera jamais votre mot de passe ni un "
    "code par e-mail ou par SMS."
)


def known(kind: int, variant: str) -> bool:
    return (kind, variant.removesuffix("." + REPRESENTATIVE)) in _TEMPLATES


def _when(moment: datetime) -> str:
    local = moment.astimezone(PARIS)
    return f"{local.day:02d}/{local.month:02d}/{local.year} à {local.hour:02d} h {local.minute:02d}"


def _day(moment: datetime) -> str:
    local = moment.astimezone(PARIS)
    return f"{local.day:02d}/{local.month:02d}/{local.year}"


def _words(variant: str) -> tuple[str, str, str]:
    """(in-sentence, sentence-start, SMS) names of the record for the audience."""
    if variant.endswith("." + REPRESENTATIVE):
        return (
            "le DMP d'une personne que vous représentez",
            "Le DMP d'une personne que vous représentez",
            "le DMP d'une personne que vous représentez",
        )
    return (
        "votre Dossier Médical Partagé (DMP)",
        "Votre Dossier Médical Partagé (DMP)",
        "votre DMP",
    )


def _fact(  # noqa: PLR0917 - the words of one sentence
    template: _Template, actor: Actor | None, dmp: str, dmp_start: str, when: str, day: str = ""
) -> str:
    if actor is not None and template.named_fact:
        who = actor.who()
        via = f" via {actor.establishment}" if actor.establishment else ""
        if who or via:
            who = who or "un professionnel de santé"
            # « Le Dr Marie Roux, médecin, a accédé » : the profession is an apposition.
            close = "," if ", " in who else ""
            return template.named_fact.format(
                Who=who[:1].upper() + who[1:] + close,
                who_via=who + (close + via if via else ""),
                via=via,
                dmp=dmp,
                when=when,
            )
    return template.fact.format(dmp=dmp, Dmp=dmp_start, when=when, day=day)


def email(
    kind: int, variant: str, occur_time: datetime, *, urgent: bool, actor: Actor | None = None
) -> EmailText:
    base = variant.removesuffix("." + REPRESENTATIVE)
    template = _TEMPLATES[(kind, base)]
    dmp, dmp_start, _ = _words(variant)
    fact = _fact(template, actor, dmp, dmp_start, _when(occur_time), _day(occur_time))
    subject = template.subject
    if variant.endswith("." + REPRESENTATIVE):
        subject = subject.replace("votre DMP", "un DMP").replace("Votre DMP", "Un DMP")
    if urgent and not subject.startswith("URGENT"):
        subject = "URGENT : " + subject
    body = f"Bonjour,\n\n{fact}\n\n{template.where}\n\n{_FOOTER}\n"
    return EmailText(subject=subject, body=body)


def sms(kind: int, variant: str, *, urgent: bool, actor: Actor | None = None) -> str:
    base = variant.removesuffix("." + REPRESENTATIVE)
    template = _TEMPLATES[(kind, base)]
    _, _, short = _words(variant)
    if actor is not None and actor.display_name and template.named_sms:
        text = template.named_sms.format(dmp_short=short, name=actor.display_name)
    else:
        text = template.sms.format(dmp_short=short)
    if urgent and not text.startswith("DMP URGENT"):
        text = text.replace("DMP :", "DMP URGENT :", 1)
    return text
