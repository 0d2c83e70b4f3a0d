"""Requests every scripted client of the platform sends first: a record created at a CPAM desk.

The demo and the benchmarks build the same desk creation; one builder keeps the
patient identity and the attestation in the shape records validates.
"""

from __future__ import annotations

import uuid

from dmp.records.v1 import records_pb2

R = records_pb2


def desk_creation(
    ins: str,
    *,
    family_name: str = "DEMO",
    given_name: str = "Camille",
    birth: tuple[int, int, int] = (1985, 3, 14),
) -> R.CreateDossierRequest:
    """CreateDossier at a CPAM desk (office 751, Paris) with the patient's attested consent."""
    year, month, day = birth
    attest = R.ConsentAttestation(consent_obtained=True, information_given=True)
    return R.CreateDossierRequest(
        dossier=R.Dossier(
            patient_ins=ins,
            identity=R.PatientIdentity(
                birth_family_name=family_name,
                birth_given_names=[given_name],
                birth_date=R.Date(year=year, month=month, day=day),
                sex=R.SEX_FEMALE,
                birth_place_code="75056",
            ),
        ),
        desk=R.DeskCreation(consent=attest, cpam_office_code="751"),
        request_id=str(uuid.uuid4()),
    )
