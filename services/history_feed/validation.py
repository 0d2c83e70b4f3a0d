"""Checks of one claim line before it is stored.

A bad line is refused alone, with a reason from the proto's LineRejection
list and a detail naming the field (never echoing its value: a line is
medical content). Checks are ordered cheapest first and raise `LineError`,
so a good line costs a handful of regex matches and no exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from dmp.history.v1 import history_pb2
from kit import ins as kit_ins
from kit.errors import ServiceError
from services.history_feed import codes
from services.history_feed.models import MAX_LINE_ID_LENGTH

MIN_CARE_DATE = date(1900, 1, 1)
MAX_AMOUNT_CENTS = 10_000_000_000  # 100 million euros: larger is a feeder bug
MAX_QUANTITY = 100_000
MAX_LINE_BYTES = 8192
_LINE_ID = re.compile(r"[A-Za-z0-9._:/-]+")

KIND_BY_DETAILS = {
    "drug": history_pb2.CLAIM_KIND_DRUG,
    "medical_act": history_pb2.CLAIM_KIND_MEDICAL_ACT,
    "biology": history_pb2.CLAIM_KIND_BIOLOGY,
    "medical_device": history_pb2.CLAIM_KIND_MEDICAL_DEVICE,
    "hospital_stay": history_pb2.CLAIM_KIND_HOSPITAL_STAY,
    "vaccine": history_pb2.CLAIM_KIND_VACCINE,
}


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


@lru_cache(maxsize=65_536)
def _ins(value: str) -> str | None:
    """Feeds carry many lines per insured person: remember recent verdicts."""
    try:
        return kit_ins.validate(value, "patient_ins")
    except ServiceError:
        return None


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


def _quantity(value: int, field: str) -> None:
    if not 0 < value <= MAX_QUANTITY:
        raise LineError("INVALID_QUANTITY", f"{field} must be between 1 and {MAX_QUANTITY}.")


def _code(pattern: re.Pattern[str], value: str, field: str) -> None:
    if not pattern.fullmatch(value):
        raise LineError("INVALID_CODE", f"{field} is malformed.")


@lru_cache(maxsize=65_536)
def _cip13_ok(value: str) -> bool:
    """A feed repeats the same few thousand packs: remember the verdicts."""
    return codes.CIP13.fullmatch(value) is not None and codes.ean13_ok(value)


def _cip13(value: str, field: str) -> None:
    if not _cip13_ok(value):
        raise LineError("INVALID_CODE", f"{field} is not a CIP13 code (13 digits, EAN-13 key).")


_ACTOR_SHAPES = {
    history_pb2.ACTOR_ID_SYSTEM_RPPS: codes.RPPS,
    history_pb2.ACTOR_ID_SYSTEM_ADELI: codes.ADELI,
    history_pb2.ACTOR_ID_SYSTEM_AM: codes.AM_NUMBER,
    history_pb2.ACTOR_ID_SYSTEM_FINESS: codes.FINESS,
}


@lru_cache(maxsize=65_536)
def _actor_ok(system: int, actor_id: str) -> bool:
    if system == history_pb2.ACTOR_ID_SYSTEM_UNSPECIFIED and not actor_id:
        return True
    shape = _ACTOR_SHAPES.get(system)  # type: ignore[call-overload]
    return shape is not None and shape.fullmatch(actor_id) is not None


def _actor(actor: history_pb2.ActorId, field: str) -> None:
    if not _actor_ok(actor.system, actor.id):
        raise LineError("INVALID_ACTOR_ID", f"{field} is not a valid RPPS/ADELI/AM/FINESS id.")


def _drug(line: history_pb2.ClaimLine, today: date, care: date) -> str | None:
    drug = line.drug
    if drug.cip13:
        _cip13(drug.cip13, "drug.cip13")
    if drug.ucd:
        _code(codes.UCD, drug.ucd, "drug.ucd")
    if not drug.cip13 and not drug.ucd:
        raise LineError("INVALID_CODE", "drug needs a cip13 or a ucd code.")
    if drug.atc_code not in codes.AMO_PSEUDO_ATC:
        _code(codes.ATC, drug.atc_code, "drug.atc_code")
    _quantity(drug.quantity, "drug.quantity")
    return drug.atc_code


def _medical_act(line: history_pb2.ClaimLine, today: date, care: date) -> str | None:
    act = line.medical_act
    if act.coding_system == history_pb2.ACT_CODING_SYSTEM_CCAM:
        _code(codes.CCAM, act.code, "medical_act.code")
    elif act.coding_system == history_pb2.ACT_CODING_SYSTEM_NGAP:
        if act.code not in codes.NGAP_KEYS:
            raise LineError("INVALID_CODE", "medical_act.code is not an NGAP key letter.")
    else:
        raise LineError("INVALID_CODE", "medical_act.coding_system must be CCAM or NGAP.")
    if not 0 <= act.coefficient <= 1000:
        raise LineError("INVALID_QUANTITY", "medical_act.coefficient is out of range.")
    _quantity(act.quantity, "medical_act.quantity")
    return None


def _biology(line: history_pb2.ClaimLine, today: date, care: date) -> str | None:
    biology = line.biology
    _code(codes.NABM, biology.nabm_code, "biology.nabm_code")
    if len(biology.nabm_code) < 4:
        biology.nabm_code = biology.nabm_code.zfill(4)  # stored in the nomenclature's form
    _quantity(biology.quantity, "biology.quantity")
    return None


def _medical_device(line: history_pb2.ClaimLine, today: date, care: date) -> str | None:
    _code(codes.LPP, line.medical_device.lpp_code, "medical_device.lpp_code")
    _quantity(line.medical_device.quantity, "medical_device.quantity")
    return None


def _hospital_stay(line: history_pb2.ClaimLine, today: date, care: date) -> str | None:
    stay = line.hospital_stay
    _code(codes.GHS, stay.ghs_code, "hospital_stay.ghs_code")
    _code(codes.FINESS, stay.institution_finess, "hospital_stay.institution_finess")
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
    return None


def _vaccine(line: history_pb2.ClaimLine, today: date, care: date) -> str | None:
    vaccine = line.vaccine
    _cip13(vaccine.cip13, "vaccine.cip13")
    _code(codes.ATC, vaccine.atc_code, "vaccine.atc_code")
    if not vaccine.atc_code.startswith("J07"):
        raise LineError("INVALID_CODE", "vaccine.atc_code must be in ATC class J07.")
    _quantity(vaccine.quantity, "vaccine.quantity")
    return vaccine.atc_code


#: Kind-specific checks; each returns the line's ATC code, if its kind has one.
_DETAIL_CHECKS = {
    "drug": _drug,
    "medical_act": _medical_act,
    "biology": _biology,
    "medical_device": _medical_device,
    "hospital_stay": _hospital_stay,
    "vaccine": _vaccine,
}


def check_line(line: history_pb2.ClaimLine, today: date) -> CheckedLine:
    """The line's indexed fields, or LineError."""
    line_id = line.line_id
    if not line_id:
        raise LineError("MISSING_LINE_ID", "line_id is required.")
    if len(line_id) > MAX_LINE_ID_LENGTH or not _LINE_ID.fullmatch(line_id):
        raise LineError(
            "INVALID_LINE_ID",
            f"line_id must be 1-{MAX_LINE_ID_LENGTH} characters among A-Z a-z 0-9 . _ : / -.",
        )
    ins = _ins(line.patient_ins)
    if ins is None:
        raise LineError("INVALID_INS", "patient_ins is not a valid INS (shape or key).")
    if not line.HasField("care_date"):
        raise LineError("INVALID_CARE_DATE", "care_date is required.")
    care = _past_date(line.care_date, today, "INVALID_CARE_DATE", "care_date")
    if not 0 <= line.billed_amount_cents <= MAX_AMOUNT_CENTS:
        raise LineError("INVALID_AMOUNT", "billed_amount_cents must be non-negative.")
    if not 0 <= line.reimbursed_amount_cents <= MAX_AMOUNT_CENTS:
        raise LineError("INVALID_AMOUNT", "reimbursed_amount_cents must be non-negative.")
    which = line.WhichOneof("details")
    if which is None:
        raise LineError("MISSING_DETAILS", "one of the kind-specific details is required.")
    atc = _DETAIL_CHECKS[which](line, today, care)
    if line.HasField("prescriber"):
        _actor(line.prescriber, "prescriber")
    if line.HasField("performer"):
        _actor(line.performer, "performer")
    return CheckedLine(line_id, ins, care, KIND_BY_DETAILS[which], atc)
