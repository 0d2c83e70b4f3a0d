"""Who a notice is about: the professional (and establishment) behind an access or a rule change.

Resolved when the message is rendered (and when ListNotifications is read) from the event kept
with the row (`notifications.source_payload`): `AccessRecorded` carries the RPPS and the
establishment the gateway verified, `ConsentChanged` the RPPS of a professional who changed the
rules (e.g. the creator's grant). Names, professions and specialties come from identity's
directory through kit.directory (cache, bounded timeout, a pause after a failure). Nothing here
fails a delivery: an unknown RPPS, an unreachable or unconfigured directory, an undecodable
payload all give `Actor()` or an actor with the establishment only, and the generic wording.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from dmp.authz.v1 import principal_pb2
from dmp.consent.v1 import events_pb2 as consent_events
from kit.directory import DirectoryClient, ProfessionalInfo

# As in services.notify.consumed (which imports the templates, which import this module).
ACCESS_RECORDED = "dmp.consent.access.recorded"
CONSENT_CHANGED = "dmp.consent.changed"
_REPLAY_PREFIX = "dmp.notify.replay."

#: TRE_G15 codes whose label would say more than "a nurse" in a message that travels.
_PLAIN_PROFESSION = {"69": "infirmier"}
_MEDECIN = "10"


@dataclass(frozen=True)
class Actor:
    """The professional a notice names; empty strings where unknown."""

    display_name: str = ""
    profession_code: str = ""
    profession: str = ""
    #: Shown in the patient's space only (ListNotifications), never in an e-mail or SMS.
    specialty: str = ""
    establishment: str = ""

    @property
    def named(self) -> bool:
        return bool(self.display_name)

    def who(self) -> str:
        """« le Dr Marie Roux, médecin » / « Julie Martin, pharmacien » (no specialty)."""
        if not self.display_name:
            return ""
        if self.profession_code == _MEDECIN:
            # A directory name may already carry the title (the dev cards' "Dr Anne Morel").
            return f"le Dr {self.display_name.removeprefix('Dr ')}, médecin"
        label = _PLAIN_PROFESSION.get(self.profession_code, self.profession.lower())
        return f"{self.display_name}, {label}" if label else self.display_name


def professional_of(subject: str, payload: bytes | None) -> tuple[str, str]:
    """(RPPS, establishment name) an event names; ("", "") when none or undecodable."""
    while subject.startswith(_REPLAY_PREFIX):
        subject = subject.removeprefix(_REPLAY_PREFIX)
    try:
        if subject == ACCESS_RECORDED:
            access = consent_events.AccessRecorded.FromString(payload or b"")
            if (
                access.activation_reissued
                or access.principal_kind != principal_pb2.PRINCIPAL_KIND_PROFESSIONAL
            ):
                return "", ""
            return access.principal_subject, access.establishment_name
        if subject == CONSENT_CHANGED:
            changed = consent_events.ConsentChanged.FromString(payload or b"")
            return changed.actor_rpps, ""
    except DecodeError:
        return "", ""
    return "", ""


def actor_from(
    rpps: str, establishment: str, known: Mapping[str, ProfessionalInfo | None]
) -> Actor:
    """The actor from what the directory answered (`known`, by RPPS)."""
    info = known.get(rpps) if rpps else None
    if info is None:
        return Actor(establishment=establishment)
    return Actor(
        display_name=info.display_name if info.display_name != rpps else "",
        profession_code=info.profession_code,
        profession=info.profession_label if info.profession_code else "",
        specialty=info.specialty_label,
        establishment=establishment,
    )


async def resolve(directory: DirectoryClient | None, subject: str, payload: bytes) -> Actor:
    """The actor of the event, as far as the directory knows them (never raises)."""
    rpps, establishment = professional_of(subject, payload or b"")
    if not rpps or directory is None:
        return Actor(establishment=establishment)
    return actor_from(rpps, establishment, {rpps: await directory.describe(rpps)})
