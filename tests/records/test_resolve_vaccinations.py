"""records' internal ResolveVaccinations: which book entries record given vaccinations (vaccine
code among the probe's, same administration date), names only; history_feed links the
insurer's vaccine lines with it. And CreateVaccination on a record named by the INS."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import grpc

from dmp.records.v1 import records_pb2
from dmp_dev.testing import principals
from tests.fixtures.records import RecordsCalls, patient, professional
from tests.records.helpers import expect_error, new_dossier, rid

R = records_pb2
S = grpc.StatusCode
FLU, TETANUS = "J07BB02", "J07AM01"
FLU_CIP13 = "3400930081296"


def _d(day: date) -> R.Date:
    return R.Date(year=day.year, month=day.month, day=day.day)


async def _vaccinate(records: RecordsCalls, dossier: str, code: str, day: date, lot: str) -> str:
    created = await records.call(
        "CreateVaccination",
        R.CreateVaccinationRequest(
            parent=dossier,
            vaccination=R.Vaccination(
                vaccine=R.CodedConcept(code=code), administration_date=_d(day), lot_number=lot
            ),
            request_id=rid(),
        ),
        professional("10000000092"),
    )
    return str(created.name)


def _probe(day: date, *codes: str) -> R.VaccinationProbe:
    return R.VaccinationProbe(vaccine_codes=codes, administration_date=_d(day))


async def test_resolve_matches_code_and_date_names_only(records: RecordsCalls) -> None:
    dossier, ins = await new_dossier(records)
    other, _ = await new_dossier(records)
    today = datetime.now(UTC).date()
    flu = await _vaccinate(records, dossier, FLU, today, "L1")
    await _vaccinate(records, dossier, FLU, today, "L2")  # a second entry the same day
    cip = await _vaccinate(records, dossier, FLU_CIP13, today - timedelta(days=9), "L3")
    await _vaccinate(records, other, TETANUS, today, "L4")
    probes = [
        _probe(today, FLU_CIP13, FLU),  # the line's CIP13 and ATC: the ATC entry, first recorded
        _probe(today - timedelta(days=9), FLU_CIP13, FLU),  # recorded under its CIP13
        _probe(today - timedelta(days=1), FLU),  # another day
        _probe(today, TETANUS),  # given that day, but to another patient
        R.VaccinationProbe(vaccine_codes=[FLU], administration_date=R.Date(year=2024, month=2)),
    ]
    answer = await records.call(
        "ResolveVaccinations",
        R.ResolveVaccinationsRequest(parent=dossier, probes=probes),
        principals.internal("history_feed"),
    )
    assert list(answer.vaccinations) == [flu, cip, "", "", ""]
    # Internal only: not the patient, not a professional; a bound on the probes; a record.
    for caller in (patient(ins), professional("10000000092")):
        await expect_error(
            records.call(
                "ResolveVaccinations",
                R.ResolveVaccinationsRequest(parent=dossier, probes=probes),
                caller,
            ),
            S.PERMISSION_DENIED,
            "INTERNAL_METHOD",
        )
    await expect_error(
        records.call(
            "ResolveVaccinations",
            R.ResolveVaccinationsRequest(parent=dossier, probes=[_probe(today, FLU)] * 201),
            principals.internal("history_feed"),
        ),
        S.INVALID_ARGUMENT,
        "TOO_MANY_PROBES",
    )
    await expect_error(
        records.call(
            "ResolveVaccinations",
            R.ResolveVaccinationsRequest(parent="dossiers/" + "0" * 32, probes=probes),
            principals.internal("history_feed"),
        ),
        S.NOT_FOUND,
    )
    await expect_error(
        records.call(
            "ResolveVaccinations",
            R.ResolveVaccinationsRequest(parent="patients/x", probes=probes),
            principals.internal("history_feed"),
        ),
        S.INVALID_ARGUMENT,
        "INVALID_NAME",
    )


async def test_a_vaccination_recorded_by_ins_name(records: RecordsCalls) -> None:
    """A nurse in front of the patient knows the INS: `patients/{ins}/dossier` names the
    record; a malformed INS is refused before anything is read."""
    dossier, ins = await new_dossier(records)
    today = datetime.now(UTC).date()
    created = await records.call(
        "CreateVaccination",
        R.CreateVaccinationRequest(
            parent=f"patients/{ins}/dossier",
            vaccination=R.Vaccination(
                vaccine=R.CodedConcept(code=FLU),
                administration_date=_d(today),
                lot_number="BY-INS",
                booster_date=_d(today + timedelta(days=365)),
            ),
            request_id=rid(),
        ),
        professional("10000000132"),
    )
    assert created.name.startswith(f"{dossier}/vaccinations/")
    wrong_key = ins[:-2] + f"{(int(ins[-2:]) + 1) % 97:02d}"
    await expect_error(
        records.call(
            "CreateVaccination",
            R.CreateVaccinationRequest(
                parent=f"patients/{wrong_key}/dossier",
                vaccination=R.Vaccination(
                    vaccine=R.CodedConcept(code=FLU), administration_date=_d(today)
                ),
                request_id=rid(),
            ),
            professional("10000000132"),
        ),
        S.INVALID_ARGUMENT,
        "INS_KEY_MISMATCH",
    )
