"""Checks of one claim line before it is stored.

A bad line is refused alone, with a reason from the proto's LineRejection
list and a detail naming the field (never echoing its value: a line is
medical content).

Validation is the ingest's main Python cost (profiled: ~11 µs of ~15 µs per
line before this design), so a `LineChecker` lives for one ingest run and
remembers the values a feed repeats (INS, dates, drug and act codes) in
bounded sets: a good line then costs a few protobuf field reads and set
lookups, no function call per field and no exception. Each verdict is still
the full check on first sight.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from dmp.history.v1 import history_pb2
from kit import ins as kit_ins
from kit import rpps as kit_rpps
from kit.errors import ServiceError
from services.history_feed import codes
from services.history_feed.models import MAX_LINE_ID_LENGTH

T = TypeVar("T")

MIN_CARE_DATE = date(1900, 1, 1)
MAX_AMOUNT_CENTS = 10_000_000_000  # 100 million euros: larger is a feeder bug
MAX_QUANTITY = 100_000
MAX_LINE_BYTES = 8192
#: Entries per verdict cache; reaching it empties the cache (memory stays bounded).
CACHE_ENTRIES = 20_000
_LINE_ID = re.compile(rf"[A-Za-z0-9._:/-]{{1,{MAX_LINE_ID_LENGTH}}}").fullmatch

KIND_BY_DETAILS = {
    "drug": history_pb2.CLAIM_KIND_DRUG,
    "medical_act": history_pb2.CLAIM_KIND_MEDICAL_ACT,
    "biology": history_pb2.CLAIM_KIND_BIOLOGY,
    "medical_device": history_pb2.CLAIM_KIND_MEDICAL_DEVICE,
    "hospital_stay": history_pb2.CLAIM_KIND_HOSPITAL_STAY,
    "vaccine": history_pb2.CLAIM_KIND_VACCINE,
}
_DRUG = history_pb2.CLAIM_KIND_DRUG
_CCAM = history_pb2.ACT_CODING_SYSTEM_CCAM
_NGAP = history_pb2.ACT_CODING_SYSTEM_NGAP
_ACTOR_SHAPES = {
    history_pb2.ACTOR_ID_SYSTEM_RPPS: kit_rpps.SHAPE.fullmatch,
    history_pb2.ACTOR_ID_SYSTEM_ADELI: codes.ADELI.fullmatch,
    history_pb2.ACTOR_ID_SYSTEM_AM: codes.AM_NUMBER.fullmatch,
    history_pb2.ACTOR_ID_SYSTEM_FINESS: codes.FINESS.fullmatch,
}
_INVALID_ACTOR = "is not a valid RPPS/ADELI/AM/FINESS id."

#: (line_id, normalized INS, care date, kind, ATC code or None)
Checked = tuple[str, str, date, int, str | None]


class LineError(Exception):
    """A line refused with a LineRejection reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class CheckedLine:
    """What reads filter on, extracted from a valid line."""

    line_id: str
    patient_ins: str
    care_date: date
    kind: int
    atc_code: str | None


def to_date(value: history_pb2.Date, reason: str, field: str) -> date:
    try:
        return date(value.year, value.month, value.day)
    except ValueError:
        raise LineError(reason, f"{field} is not a valid calendar date.") from None


def _past_date(value: history_pb2.Date, today: date, reason: str, field: str) -> date:
    result = to_date(value, reason, field)
    if result > today:
        raise LineError(reason, f"{field} is in the future.")
    if result < MIN_CARE_DATE:
        raise LineError(reason, f"{field} is before 1900.")
    return result


def _bad_line_id(line_id: str) -> LineError:
    if not line_id:
        return LineError("MISSING_LINE_ID", "line_id is required.")
    return LineError(
        "INVALID_LINE_ID",
        f"line_id must be 1-{MAX_LINE_ID_LENGTH} characters among A-Z a-z 0-9 . _ : / -.",
    )


def _bad_amount(billed: int) -> LineError:
    field = "reimbursed_amount_cents" if 0 <= billed <= MAX_AMOUNT_CENTS else "billed_amount_cents"
    return LineError("INVALID_AMOUNT", f"{field} must be non-negative.")


def _bad_quantity(field: str) -> LineError:
    return LineError("INVALID_QUANTITY", f"{field} must be between 1 and {MAX_QUANTITY}.")


def _bad_code(field: str) -> LineError:
    return LineError("INVALID_CODE", f"{field} is malformed.")


def _cip13_ok(value: str) -> bool:
    return codes.CIP13.fullmatch(value) is not None and codes.ean13_ok(value)


def _atc_ok(value: str) -> bool:
    return value in codes.AMO_PSEUDO_ATC or codes.ATC.fullmatch(value) is not None


def _remember(known: set[T], value: T) -> None:
    """Add a value found good; a full cache starts over (memory stays bounded)."""
    if len(known) >= CACHE_ENTRIES:
        known.clear()
    known.add(value)


class LineChecker:
    """Checks the lines of one ingest run against `today` (French calendar)."""

    def __init__(self, today: date) -> None:
        self.today = today
        self._ins: dict[str, str] = {}
        self._dates: dict[tuple[int, int, int], date] = {}
        self._drugs: set[tuple[str, str, str]] = set()
        self._codes: set[tuple[object, ...]] = set()
        self._detail_checks: dict[str, Callable[[history_pb2.ClaimLine, date], str | None]] = {
            "medical_act": self._medical_act,
            "biology": self._biology,
            "medical_device": self._medical_device,
            "hospital_stay": self._hospital_stay,
            "vaccine": self._vaccine,
        }

    def cache_sizes(self) -> dict[str, int]:
        """Entries held per cache: the run's memory must not grow with the stream."""
        return {
            "ins": len(self._ins),
            "dates": len(self._dates),
            "drugs": len(self._drugs),
            "codes": len(self._codes),
        }

    def check(self, line: history_pb2.ClaimLine) -> Checked:
        """The line's indexed fields, or LineError (cheapest checks first)."""
        line_id = line.line_id
        if not _LINE_ID(line_id):
            raise _bad_line_id(line_id)
        raw_ins = line.patient_ins
        ins = self._ins.get(raw_ins)
        if ins is None:
            ins = self._new_ins(raw_ins)
        day = line.care_date
        key = (day.year, day.month, day.day)
        care = self._dates.get(key)
        if care is None:
            care = self._new_date(line)
            if len(self._dates) >= CACHE_ENTRIES:
                self._dates.clear()
            self._dates[key] = care
        billed = line.billed_amount_cents
        reimbursed = line.reimbursed_amount_cents
        if not (0 <= billed <= MAX_AMOUNT_CENTS and 0 <= reimbursed <= MAX_AMOUNT_CENTS):
            raise _bad_amount(billed)
        which = line.WhichOneof("details")
        if which == "drug":
            atc: str | None = self._drug(line.drug)
            kind = _DRUG
        elif which is None:
            raise LineError("MISSING_DETAILS", "one of the kind-specific details is required.")
        else:
            atc = self._detail_checks[which](line, care)
            kind = KIND_BY_DETAILS[which]
        # Actor ids are too varied to cache (one pharmacy FINESS per drug line):
        # an unset ActorId reads as (0, "") and is fine.
        actor = line.prescriber
        system = actor.system
        if system or actor.id:
            shape = _ACTOR_SHAPES.get(system)
            if shape is None or shape(actor.id) is None:
                raise LineError("INVALID_ACTOR_ID", f"prescriber {_INVALID_ACTOR}")
        actor = line.performer
        system = actor.system
        if system or actor.id:
            shape = _ACTOR_SHAPES.get(system)
            if shape is None or shape(actor.id) is None:
                raise LineError("INVALID_ACTOR_ID", f"performer {_INVALID_ACTOR}")
        return line_id, ins, care, kind, atc

    # -- first sight of a value -------------------------------------------------

    def _new_ins(self, raw: str) -> str:
        try:
            ins = kit_ins.validate(raw, "patient_ins")
        except ServiceError:
            raise LineError(
                "INVALID_INS", "patient_ins is not a valid INS (shape or key)."
            ) from None
        if len(self._ins) >= CACHE_ENTRIES:
            self._ins.clear()
        self._ins[raw] = ins
        return ins

    def _new_date(self, line: history_pb2.ClaimLine) -> date:
        if not line.HasField("care_date"):
            raise LineError("INVALID_CARE_DATE", "care_date is required.")
        return _past_date(line.care_date, self.today, "INVALID_CARE_DATE", "care_date")

    # -- kind-specific checks; each returns the line's ATC code, if its kind has one

    def _drug(self, drug: history_pb2.DrugDispensation) -> str:
        atc = drug.atc_code
        key = (drug.cip13, drug.ucd, atc)
        if key not in self._drugs:
            cip13, ucd, _ = key
            if cip13 and not _cip13_ok(cip13):
                raise LineError(
                    "INVALID_CODE", "drug.cip13 is not a CIP13 code (13 digits, EAN-13 key)."
                )
            if ucd and not codes.UCD.fullmatch(ucd):
                raise _bad_code("drug.ucd")
            if not cip13 and not ucd:
                raise LineError("INVALID_CODE", "drug needs a cip13 or a ucd code.")
            if not _atc_ok(atc):
                raise _bad_code("drug.atc_code")
            _remember(self._drugs, key)
        if not 0 < drug.quantity <= MAX_QUANTITY:
            raise _bad_quantity("drug.quantity")
        return atc

    def _medical_act(self, line: history_pb2.ClaimLine, care: date) -> None:
        act = line.medical_act
        key = ("act", act.coding_system, act.code)
        if key not in self._codes:
            _, system, code = key
            if system == _CCAM:
                if not codes.CCAM.fullmatch(code):
                    raise _bad_code("medical_act.code")
            elif system == _NGAP:
                if code not in codes.NGAP_KEYS:
                    raise LineError("INVALID_CODE", "medical_act.code is not an NGAP key letter.")
            else:
                raise LineError("INVALID_CODE", "medical_act.coding_system must be CCAM or NGAP.")
            _remember(self._codes, key)
        if not 0 <= act.coefficient <= 1000:
            raise LineError("INVALID_QUANTITY", "medical_act.coefficient is out of range.")
        if not 0 < act.quantity <= MAX_QUANTITY:
            raise _bad_quantity("medical_act.quantity")

    def _biology(self, line: history_pb2.ClaimLine, care: date) -> None:
        biology = line.biology
        code = biology.nabm_code
        if not codes.NABM.fullmatch(code):
            raise _bad_code("biology.nabm_code")
        if len(code) < 4:
            biology.nabm_code = code.zfill(4)  # stored in the nomenclature's form
        if not 0 < biology.quantity <= MAX_QUANTITY:
            raise _bad_quantity("biology.quantity")

    def _medical_device(self, line: history_pb2.ClaimLine, care: date) -> None:
        device = line.medical_device
        if not codes.LPP.fullmatch(device.lpp_code):
            raise _bad_code("medical_device.lpp_code")
        if not 0 < device.quantity <= MAX_QUANTITY:
            raise _bad_quantity("medical_device.quantity")

    def _hospital_stay(self, line: history_pb2.ClaimLine, care: date) -> None:
        stay = line.hospital_stay
        today = self.today
        if not codes.GHS.fullmatch(stay.ghs_code):
            raise _bad_code("hospital_stay.ghs_code")
        if not codes.FINESS.fullmatch(stay.institution_finess):
            raise _bad_code("hospital_stay.institution_finess")
        if not stay.HasField("admission_date"):
            raise LineError("INVALID_STAY_DATES", "hospital_stay.admission_date is required.")
        admission = _past_date(
            stay.admission_date, today, "INVALID_STAY_DATES", "hospital_stay.admission_date"
        )
        if admission != care:
            raise LineError("INVALID_STAY_DATES", "care_date must be the admission date.")
        if stay.HasField("discharge_date"):
            discharge = _past_date(
                stay.discharge_date, today, "INVALID_STAY_DATES", "hospital_stay.discharge_date"
            )
            if discharge < admission:
                raise LineError("INVALID_STAY_DATES", "discharge_date is before admission_date.")

    def _vaccine(self, line: history_pb2.ClaimLine, care: date) -> str:
        vaccine = line.vaccine
        cip13, atc = vaccine.cip13, vaccine.atc_code
        key = ("vaccine", cip13, atc)
        if key not in self._codes:
            if not _cip13_ok(cip13):
                raise LineError(
                    "INVALID_CODE", "vaccine.cip13 is not a CIP13 code (13 digits, EAN-13 key)."
                )
            if not codes.ATC.fullmatch(atc):
                raise _bad_code("vaccine.atc_code")
            if not atc.startswith("J07"):
                raise LineError("INVALID_CODE", "vaccine.atc_code must be in ATC class J07.")
            _remember(self._codes, key)
        if not 0 < vaccine.quantity <= MAX_QUANTITY:
            raise _bad_quantity("vaccine.quantity")
        return atc


def check_line(line: history_pb2.ClaimLine, today: date) -> CheckedLine:
    """One line checked on its own (tests, tools); ingest runs keep one LineChecker."""
    return CheckedLine(*LineChecker(today).check(line))
