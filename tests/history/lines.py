"""Small builders of claim lines for the history tests."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from dmp.history.v1 import history_pb2
from kit import ins as kit_ins
from services.history_feed.materialize import months_before
from services.history_feed.synthetic import cip13


def new_ins(seed: int | None = None) -> str:
    """A fresh valid INS, so tests never share a patient."""
    number = seed if seed is not None else uuid.uuid4().int % 999_999
    nir = f"185057{number:06d}1"[:13]
    return kit_ins.with_key(nir)


def prefix() -> str:
    return f"T{uuid.uuid4().hex[:10]}-"


def pdate(value: date) -> history_pb2.Date:
    return history_pb2.Date(year=value.year, month=value.month, day=value.day)


def ago(days: int = 0, months: int = 0) -> date:
    return months_before(date.today(), months) - timedelta(days=days)


def drug(
    line_id: str,
    ins: str,
    care: date,
    atc: str = "C09AA05",
    quantity: int = 1,
    billed: int = 466,
) -> history_pb2.ClaimLine:
    line = history_pb2.ClaimLine(
        line_id=line_id,
        patient_ins=ins,
        billed_amount_cents=billed,
        reimbursed_amount_cents=int(billed * 0.65),
    )
    line.care_date.CopyFrom(pdate(care))
    line.drug.cip13 = cip13("340093006491")
    line.drug.atc_code = atc
    line.drug.label = "RAMIPRIL 5MG CPR 30"
    line.drug.quantity = quantity
    line.prescriber.system = history_pb2.ACTOR_ID_SYSTEM_RPPS
    line.prescriber.id = "10100997245"
    return line


def act(line_id: str, ins: str, care: date, code: str = "G") -> history_pb2.ClaimLine:
    line = history_pb2.ClaimLine(
        line_id=line_id, patient_ins=ins, billed_amount_cents=3000, reimbursed_amount_cents=2100
    )
    line.care_date.CopyFrom(pdate(care))
    ngap = not (len(code) == 7 and code[:4].isalpha())
    line.medical_act.coding_system = (
        history_pb2.ACT_CODING_SYSTEM_NGAP if ngap else history_pb2.ACT_CODING_SYSTEM_CCAM
    )
    line.medical_act.code = code
    line.medical_act.coefficient = 1.0 if ngap else 0.0
    line.medical_act.quantity = 1
    return line
