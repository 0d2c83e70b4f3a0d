"""Realistic synthetic claim lines for demos, tests and benchmarks.

Real code shapes (CIP13 with its EAN-13 key, ATC level 5, CCAM, NGAP keys,
NABM, LPP, GHS, FINESS, RPPS) and realistic proportions: pharmacy
dispensations dominate, then consultations and acts, biology, devices,
vaccines, and a few hospital stays. Valid INS with their key. Amounts in
cents with the usual reimbursement rates. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from dmp.history.v1 import history_pb2
from kit import ins as kit_ins


def cip13(stem: str) -> str:
    """A CIP13 code (EAN-13) from its 12-digit stem."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(stem))
    return stem + str((10 - total % 10) % 10)


# (CIP13 stem, ATC, label, unit price in cents, reimbursement rate)
DRUGS: tuple[tuple[str, str, str, int, float], ...] = (
    ("340093595583", "N02BE01", "DOLIPRANE 1000MG CPR 8", 216, 0.65),
    ("340093916900", "C10AA07", "CRESTOR 5MG CPR 30", 1370, 0.65),
    ("340093006491", "C09AA05", "RAMIPRIL 5MG CPR 30", 466, 0.65),
    ("340093430189", "A10BA02", "METFORMINE 850MG CPR 30", 283, 0.65),
    ("340093725321", "C07AB07", "BISOPROLOL 5MG CPR 30", 329, 0.65),
    ("340093582374", "B01AC06", "KARDEGIC 75MG PDR 30", 314, 0.65),
    ("340093607168", "A02BC01", "OMEPRAZOLE 20MG GELU 28", 484, 0.65),
    ("340093411034", "H03AA01", "LEVOTHYROX 75UG CPR 30", 251, 0.65),
    ("340093480032", "J01CA04", "AMOXICILLINE 1G CPR 6", 505, 0.65),
    ("340093692117", "M01AE01", "IBUPROFENE 400MG CPR 30", 250, 0.30),
    ("340093584537", "N05BA12", "ALPRAZOLAM 0.25MG CPR 30", 164, 0.65),
    ("340093677225", "N06AB10", "ESCITALOPRAM 10MG CPR 28", 877, 0.65),
    ("340093015226", "R03AC02", "VENTOLINE 100UG SUSP INH", 357, 0.65),
    ("340093630524", "R06AE07", "CETIRIZINE 10MG CPR 15", 177, 0.30),
    ("340093006789", "C09CA01", "LOSARTAN 50MG CPR 30", 586, 0.65),
)
DRUG_WEIGHTS = (18, 6, 6, 7, 5, 6, 7, 6, 8, 6, 4, 4, 4, 3, 3)

VACCINES: tuple[tuple[str, str, str, int], ...] = (
    ("340093015943", "J07BB02", "VAXIGRIP TETRA SUSP INJ 0.5ML", 1040),
    ("340093285724", "J07AM01", "VACCIN TETANIQUE PASTEUR SUSP INJ 0.5ML", 554),
    ("340093012218", "J07CA02", "REPEVAX SUSP INJ 0.5ML", 2570),
    ("340093002354", "J07AL02", "PREVENAR 13 SUSP INJ 0.5ML", 5616),
)

_NGAP = history_pb2.ACT_CODING_SYSTEM_NGAP
_CCAM = history_pb2.ACT_CODING_SYSTEM_CCAM

# (coding system, code, label, coefficient, price in cents, weight)
ACTS: tuple[tuple[int, str, str, float, int, int], ...] = (
    (_NGAP, "G", "CONSULTATION MEDECINE GENERALE", 1.0, 3000, 40),
    (_NGAP, "APC", "AVIS PONCTUEL DE CONSULTANT", 1.0, 5600, 3),
    (_NGAP, "CS", "CONSULTATION SPECIALISTE", 1.0, 3000, 10),
    (_NGAP, "AMI", "ACTE INFIRMIER", 1.0, 315, 10),
    (_NGAP, "AMK", "ACTE DE KINESITHERAPIE", 7.5, 218, 8),
    (
        history_pb2.ACT_CODING_SYSTEM_NGAP,
        "FTR",
        "FORFAIT TECHNIQUE REDUIT IRM-SCANNER",
        1.0,
        5000,
        2,
    ),
    (
        history_pb2.ACT_CODING_SYSTEM_CCAM,
        "DEQP003",
        "ECG SUR AU MOINS 12 DERIVATIONS",
        0.0,
        1496,
        5,
    ),
    (_CCAM, "ZBQK002", "RADIOGRAPHIE DU THORAX", 0.0, 2128, 5),
    (_CCAM, "QEQJ001", "IRM DU SEIN AVEC INJECTION IV", 0.0, 6900, 1),
    (_CCAM, "YYYY600", "SUPPL. ARCHIVAGE NUMERIQUE", 0.0, 150, 2),
    (_CCAM, "HBMD053", "RESTAURATION 1 FACE PREMOLAIRE", 0.0, 2892, 4),
    (_CCAM, "BJQP002", "EXAMEN MOTRICITE OCULAIRE", 0.0, 2880, 2),
    (_CCAM, "JQQM010", "ECHOGRAPHIE OBSTETRICALE T1", 0.0, 5404, 1),
)

# (NABM, label, price in cents, weight)
BIOLOGY: tuple[tuple[str, str, int, int], ...] = (
    ("1104", "HEMOGRAMME Y COMPRIS PLAQUETTES", 756, 10),
    ("0552", "GLUCOSE (SANG)", 130, 8),
    ("0996", "EXPLORATION D'UNE ANOMALIE LIPIDIQUE", 864, 6),
    ("1577", "HEMOGLOBINE GLYQUEE", 945, 4),
    ("1208", "TSH", 1040, 4),
    ("0592", "CREATININE (SANG)", 162, 7),
    ("1804", "PROTEINE C REACTIVE", 270, 3),
)

# (LPP, label, price in cents)
DEVICES: tuple[tuple[str, str, int], ...] = (
    ("1188691", "BANDELETTES GLYCEMIE, BOITE DE 50", 1695),
    ("1136640", "BAS DE CONTENTION CLASSE 2", 2960),
    ("2209346", "VERRE UNIFOCAL ADULTE", 1220),
    ("3408693", "STIMULATEUR CARDIAQUE TRIPLE CHAMBRE", 450000),
    ("1137521", "LANCETTES AUTOPIQUEUR, BOITE DE 100", 960),
)

# (GHS, label, price in cents, mean length of stay in days)
STAYS: tuple[tuple[str, str, int, int], ...] = (
    ("1940", "INTERVENTIONS MAJEURES SUR L'INTESTIN GRELE ET LE COLON, NIVEAU 2", 1124300, 9),
    ("1721", "MISE EN PLACE D'ACCES VASCULAIRES DE LA CMD 05, MOINS DE 2 JOURS", 189300, 1),
    ("5503", "ACCOUCHEMENT UNIQUE PAR VOIE BASSE, NIVEAU 1", 270900, 4),
    ("0410", "CHOLECYSTECTOMIE SANS EXPLORATION DE LA VOIE BILIAIRE, NIVEAU 1", 389500, 2),
)
INSTITUTIONS = (
    ("750300550", "CLINIQUE SAINTE GENEVIEVE"),
    ("690781810", "HOPITAL EDOUARD HERRIOT"),
    ("130786049", "HOPITAL DE LA TIMONE"),
    ("330781196", "CHU DE BORDEAUX - PELLEGRIN"),
)

KIND_WEIGHTS = {
    "drug": 55,
    "medical_act": 25,
    "biology": 12,
    "medical_device": 4,
    "vaccine": 3,
    "hospital_stay": 1,
}


def random_ins(rng: random.Random) -> str:
    """A valid INS (NIR with key) with a plausible birth year and department."""
    nir = (
        f"{rng.choice('12')}{rng.randint(30, 99):02d}{rng.randint(1, 12):02d}"
        f"{rng.randint(1, 95):02d}{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}"
    )
    return f"{nir}{kit_ins.control_key(nir):02d}"


def random_rpps(rng: random.Random) -> str:
    return f"10{rng.randint(0, 999_999_999):09d}"


_Line = history_pb2.ClaimLine


def to_proto_date(value: date) -> history_pb2.Date:
    return history_pb2.Date(year=value.year, month=value.month, day=value.day)


@dataclass
class Generator:
    """Lines for `patients` insured people over the last `months` months."""

    seed: int = 0
    patients: int = 1000
    months: int = 30
    prefix: str = "L"
    today: date | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - synthetic data, not secrets
        rng = self._rng
        self._ins = [random_ins(rng) for _ in range(max(self.patients, 1))]
        self._doctors = [random_rpps(rng) for _ in range(max(self.patients // 20, 5))]
        self._today = self.today or date.today()
        self._kinds = list(KIND_WEIGHTS)
        self._kind_weights = list(KIND_WEIGHTS.values())
        self._drugs = [(cip13(d[0]), d[1], d[2], d[3], d[4]) for d in DRUGS]
        self._vaccines = [(cip13(v[0]), v[1], v[2], v[3]) for v in VACCINES]

    def lines(self, count: int, start: int = 0) -> Iterator[history_pb2.ClaimLine]:
        for sequence in range(start, start + count):
            yield self.line(sequence)

    def line(self, sequence: int) -> history_pb2.ClaimLine:
        rng = self._rng
        # A few heavy consumers, many light ones (chronic treatments).
        patient = self._ins[int(len(self._ins) * rng.random() ** 2)]
        care = self._today - timedelta(days=rng.randint(0, self.months * 30))
        kind = rng.choices(self._kinds, self._kind_weights)[0]
        line = history_pb2.ClaimLine(line_id=f"{self.prefix}{sequence:012d}", patient_ins=patient)
        line.care_date.CopyFrom(to_proto_date(care))
        doctor = rng.choice(self._doctors)
        getattr(self, "_" + kind)(line, rng, care, doctor)
        return line

    def _drug(self, line: _Line, rng: random.Random, care: date, doctor: str) -> None:
        code, atc, label, price, rate = rng.choices(self._drugs, DRUG_WEIGHTS)[0]
        quantity = rng.choice((1, 1, 1, 2, 3))
        line.drug.cip13 = code
        line.drug.atc_code = atc
        line.drug.label = label
        line.drug.quantity = quantity
        line.prescriber.system = history_pb2.ACTOR_ID_SYSTEM_RPPS
        line.prescriber.id = doctor
        line.performer.system = history_pb2.ACTOR_ID_SYSTEM_FINESS
        line.performer.id = f"{rng.randint(1, 95):02d}{rng.randint(0, 9_999_999):07d}"
        line.billed_amount_cents = price * quantity
        line.reimbursed_amount_cents = int(price * quantity * rate)

    def _medical_act(self, line: _Line, rng: random.Random, care: date, doctor: str) -> None:
        system, code, label, coefficient, price, _ = rng.choices(ACTS, [a[5] for a in ACTS])[0]
        line.medical_act.coding_system = system  # type: ignore[assignment]
        line.medical_act.code = code
        line.medical_act.label = label
        line.medical_act.coefficient = coefficient
        line.medical_act.quantity = 1
        line.performer.system = history_pb2.ACTOR_ID_SYSTEM_RPPS
        line.performer.id = doctor
        billed = int(price * max(coefficient, 1.0))
        line.billed_amount_cents = billed
        line.reimbursed_amount_cents = int(billed * 0.7)

    def _biology(self, line: _Line, rng: random.Random, care: date, doctor: str) -> None:
        code, label, price, _ = rng.choices(BIOLOGY, [b[3] for b in BIOLOGY])[0]
        line.biology.nabm_code = code
        line.biology.label = label
        line.biology.quantity = 1
        line.prescriber.system = history_pb2.ACTOR_ID_SYSTEM_RPPS
        line.prescriber.id = doctor
        line.billed_amount_cents = price
        line.reimbursed_amount_cents = int(price * 0.6)

    def _medical_device(self, line: _Line, rng: random.Random, care: date, doctor: str) -> None:
        code, label, price = rng.choice(DEVICES)
        line.medical_device.lpp_code = code
        line.medical_device.label = label
        line.medical_device.quantity = 1
        line.prescriber.system = history_pb2.ACTOR_ID_SYSTEM_RPPS
        line.prescriber.id = doctor
        line.billed_amount_cents = price
        line.reimbursed_amount_cents = int(price * 0.6)

    def _vaccine(self, line: _Line, rng: random.Random, care: date, doctor: str) -> None:
        code, atc, label, price = rng.choice(self._vaccines)
        line.vaccine.cip13 = code
        line.vaccine.atc_code = atc
        line.vaccine.label = label
        line.vaccine.quantity = 1
        line.billed_amount_cents = price
        line.reimbursed_amount_cents = price if atc == "J07BB02" else int(price * 0.65)

    def _hospital_stay(self, line: _Line, rng: random.Random, care: date, doctor: str) -> None:
        code, label, price, days = rng.choice(STAYS)
        finess, name = rng.choice(INSTITUTIONS)
        stay = line.hospital_stay
        stay.ghs_code = code
        stay.label = label
        stay.admission_date.CopyFrom(to_proto_date(care))
        discharge = min(care + timedelta(days=max(0, int(rng.gauss(days, days / 3)))), self._today)
        stay.discharge_date.CopyFrom(to_proto_date(discharge))
        stay.institution_finess = finess
        stay.institution_name = name
        line.performer.system = history_pb2.ACTOR_ID_SYSTEM_FINESS
        line.performer.id = finess
        line.billed_amount_cents = price
        line.reimbursed_amount_cents = price
