"""The five CI-SIS CDA samples and what their headers say (tests/records/data/cda).

The files are byte-identical copies of ../shared/data/samples/cda (test_cda_samples checks
it when that directory is present), so a checkout without ../shared runs the same tests.
All five describe one fictitious patient: recordTarget id root 1.2.250.1.213.1.4.10
(INS-NIR de test), extension 279035121518989, whose control key is valid for kit.ins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from dmp.records.v1 import records_pb2

R = records_pb2
SAMPLE_DIR = Path(__file__).parent / "data" / "cda"
SAMPLE_INS = "279035121518989"
_PARIS_WINTER = timezone(timedelta(hours=1))


def _t(*parts: int) -> datetime:
    """A header time: every sample writes +0100."""
    return datetime(*parts, tzinfo=_PARIS_WINTER).astimezone(UTC)  # type: ignore[misc]


@dataclass(frozen=True)
class Expected:
    """The metadata a sample's header gives when the client omits it."""

    type_code: str
    class_code: str
    title: str
    start: datetime
    stop: datetime | None
    author_rpps: str  # "" for the AMO's reimbursement history (a device, no RPPS)
    profession: str
    specialty: str
    author_name: str
    institution_id: str
    institution_name: str
    practice_setting: str
    facility_type: str


SAMPLES: dict[str, Expected] = {
    "BIO-CR-BIO_2024.01_TSH_1.xml": Expected(
        "11502-2",
        "10",
        "Compte rendu d'examens biologiques",
        _t(2021, 1, 4, 9, 22),
        _t(2021, 1, 4, 16, 5),
        "01234534765",
        "10",
        "SM03",
        "Dr Marcel CAMPARINI",
        "120459876",
        "Laboratoire des charmes",
        "AMBULATOIRE",
        "SA25",
    ),
    "CNAM-HR_2021.01.xml": Expected(
        "REMB",
        "60",
        "Données de remboursement",
        _t(2019, 1, 1, 15, 45),
        _t(2019, 7, 1, 15, 45),
        "",
        "",
        "",
        "Assurance Maladie",
        "18003502400041",
        "Assurance Maladie",
        "AMO",
        "SA24",
    ),
    "IMG_CR_IMG_2024.01.xml": Expected(
        "18748-4",
        "31",
        "CR d’imagerie médicale - Scanner Tête + Cou + Thorax avec injection",
        _t(2021, 1, 8, 10, 25),
        _t(2021, 1, 8, 11, 17),
        "01234560801",
        "10",
        "SM44",
        "Dr Jacques BIDEAULT",
        "920008059",
        "Centre de radiologie Ambroise",
        "AMBULATOIRE",
        "SA08",
    ),
    "LDL-SES_2022.01.xml": Expected(
        "11490-0",
        "10",
        "Lettre de liaison à la sortie de l'établissement de santé",
        _t(2019, 10, 29, 11, 17),
        _t(2019, 12, 3, 13, 30),
        "01234567897",
        "10",
        "SM27",
        "Dr Charles DAVID",
        "750803447",
        "Hôpital Européen Georges Pompidou",
        "ETABLISSEMENT",
        "SA01",
    ),
    "VAC-NOTE_2023.01.xml": Expected(
        "87273-9",
        "52",
        "NOTE DE VACCINATION",
        _t(2021, 4, 9, 15, 35),
        None,
        "01234567897",
        "10",
        "SM26",
        "Dr Charles MULLER",
        "750803447",
        "Cabinet Médical du Dr MULLER",
        "AMBULATOIRE",
        "SA07",
    ),
}


def sample(name: str) -> bytes:
    return (SAMPLE_DIR / name).read_bytes()


def for_patient(name: str, ins: str) -> bytes:
    """The sample written about the patient `ins` (its INS wherever it appears), for tests
    whose record is not the sample patient's."""
    return sample(name).replace(SAMPLE_INS.encode(), ins.encode())


def cda_document(content: bytes, **fields: object) -> R.Document:
    """A CDA upload declaring only what `fields` give: the rest comes from the header."""
    return R.Document(content=content, format=R.DOCUMENT_FORMAT_CDA_XML, **fields)  # type: ignore[arg-type]
