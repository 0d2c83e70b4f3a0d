"""Claim lines in files: NDJSON (one ClaimLine as proto JSON per line) or CSV.

CSV is the flat form AMO operators handle in spreadsheets: one row per line,
the kind in `kind` (drug, medical_act, biology, medical_device,
hospital_stay, vaccine) and its code in `code` (CIP13 or UCD for drugs,
CCAM/NGAP, NABM, LPP, GHS, CIP13 for vaccines). Dates are ISO (YYYY-MM-DD).
Files are read one line at a time, so a file of any size streams.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import IO

from google.protobuf import json_format

from dmp.history.v1 import history_pb2

CSV_COLUMNS = (
    "line_id", "patient_ins", "care_date", "kind", "code", "coding_system", "coefficient",
    "atc_code", "label", "quantity", "billed_amount_cents", "reimbursed_amount_cents",
    "prescriber_system", "prescriber_id", "performer_system", "performer_id",
    "admission_date", "discharge_date", "institution_finess", "institution_name",
)  # fmt: skip


class LineFileError(ValueError):
    """A row that cannot be turned into a ClaimLine (reported with its row number)."""


def _date(text: str) -> history_pb2.Date | None:
    if not text:
        return None
    try:
        year, month, day = (int(part) for part in text.split("-"))
    except ValueError:
        raise LineFileError(f"bad date {text!r}") from None
    return history_pb2.Date(year=year, month=month, day=day)


def _iso(value: history_pb2.Date) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def _int(text: str) -> int:
    try:
        return int(text or 0)
    except ValueError:
        raise LineFileError(f"bad number {text!r}") from None


def line_from_csv(row: dict[str, str]) -> history_pb2.ClaimLine:  # noqa: PLR0912 - one branch per kind
    line = history_pb2.ClaimLine(
        line_id=row.get("line_id", ""),
        patient_ins=row.get("patient_ins", ""),
        billed_amount_cents=_int(row.get("billed_amount_cents", "")),
        reimbursed_amount_cents=_int(row.get("reimbursed_amount_cents", "")),
    )
    care = _date(row.get("care_date", ""))
    if care is not None:
        line.care_date.CopyFrom(care)
    for role in ("prescriber", "performer"):
        system = row.get(f"{role}_system", "")
        if system or row.get(f"{role}_id"):
            actor = getattr(line, role)
            actor.system = history_pb2.ActorIdSystem.Value(
                f"ACTOR_ID_SYSTEM_{(system or 'unspecified').upper()}"
            )
            actor.id = row.get(f"{role}_id", "")
    kind = row.get("kind", "")
    code = row.get("code", "")
    label = row.get("label", "")
    quantity = _int(row.get("quantity", ""))
    atc = row.get("atc_code", "")
    if kind == "drug":
        if len(code) == 13 and code.startswith("34009"):
            line.drug.cip13 = code
        else:
            line.drug.ucd = code
        line.drug.atc_code, line.drug.label, line.drug.quantity = atc, label, quantity
    elif kind == "medical_act":
        act = line.medical_act
        act.coding_system = history_pb2.ActCodingSystem.Value(
            f"ACT_CODING_SYSTEM_{(row.get('coding_system') or 'unspecified').upper()}"
        )
        act.code, act.label, act.quantity = code, label, quantity
        act.coefficient = float(row.get("coefficient") or 0)
    elif kind == "biology":
        line.biology.nabm_code, line.biology.label, line.biology.quantity = code, label, quantity
    elif kind == "medical_device":
        device = line.medical_device
        device.lpp_code, device.label, device.quantity = code, label, quantity
    elif kind == "vaccine":
        line.vaccine.cip13, line.vaccine.atc_code = code, atc
        line.vaccine.label, line.vaccine.quantity = label, quantity
    elif kind == "hospital_stay":
        stay = line.hospital_stay
        stay.ghs_code, stay.label = code, label
        stay.institution_finess = row.get("institution_finess", "")
        stay.institution_name = row.get("institution_name", "")
        for field in ("admission_date", "discharge_date"):
            value = _date(row.get(field, ""))
            if value is not None:
                getattr(stay, field).CopyFrom(value)
    elif kind:
        raise LineFileError(f"unknown kind {kind!r}")
    return line


def line_to_csv(line: history_pb2.ClaimLine) -> dict[str, str]:
    row = dict.fromkeys(CSV_COLUMNS, "")
    row.update(
        line_id=line.line_id,
        patient_ins=line.patient_ins,
        care_date=_iso(line.care_date) if line.HasField("care_date") else "",
        billed_amount_cents=str(line.billed_amount_cents),
        reimbursed_amount_cents=str(line.reimbursed_amount_cents),
    )
    for role in ("prescriber", "performer"):
        actor: history_pb2.ActorId = getattr(line, role)
        if actor.id:
            name = history_pb2.ActorIdSystem.Name(actor.system)
            row[f"{role}_system"] = name.removeprefix("ACTOR_ID_SYSTEM_").lower()
            row[f"{role}_id"] = actor.id
    kind = line.WhichOneof("details") or ""
    row["kind"] = kind
    if kind == "drug":
        d = line.drug
        row.update(
            code=d.cip13 or d.ucd, atc_code=d.atc_code, label=d.label, quantity=str(d.quantity)
        )
    elif kind == "medical_act":
        a = line.medical_act
        system = history_pb2.ActCodingSystem.Name(a.coding_system)
        row.update(code=a.code, label=a.label, quantity=str(a.quantity),
                   coefficient=repr(a.coefficient),
                   coding_system=system.removeprefix("ACT_CODING_SYSTEM_").lower())  # fmt: skip
    elif kind == "biology":
        b = line.biology
        row.update(code=b.nabm_code, label=b.label, quantity=str(b.quantity))
    elif kind == "medical_device":
        m = line.medical_device
        row.update(code=m.lpp_code, label=m.label, quantity=str(m.quantity))
    elif kind == "vaccine":
        v = line.vaccine
        row.update(code=v.cip13, atc_code=v.atc_code, label=v.label, quantity=str(v.quantity))
    elif kind == "hospital_stay":
        s = line.hospital_stay
        row.update(code=s.ghs_code, label=s.label, institution_finess=s.institution_finess,
                   institution_name=s.institution_name)  # fmt: skip
        if s.HasField("admission_date"):
            row["admission_date"] = _iso(s.admission_date)
        if s.HasField("discharge_date"):
            row["discharge_date"] = _iso(s.discharge_date)
    return row


def read_lines(handle: Iterable[str], fmt: str) -> Iterator[history_pb2.ClaimLine]:
    """Lines of an NDJSON or CSV file; LineFileError names the bad row."""
    if fmt == "csv":
        for number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                yield line_from_csv(row)
            except LineFileError as exc:
                raise LineFileError(f"row {number}: {exc}") from None
        return
    for number, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            yield json_format.Parse(text, history_pb2.ClaimLine())
        except json_format.ParseError as exc:
            raise LineFileError(f"line {number}: {exc}") from None


def write_lines(handle: IO[str], lines: Iterable[history_pb2.ClaimLine], fmt: str) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for line in lines:
            writer.writerow(line_to_csv(line))
            count += 1
        return count
    for line in lines:
        handle.write(json.dumps(json_format.MessageToDict(line), separators=(",", ":")) + "\n")
        count += 1
    return count


def format_of(path: str, explicit: str = "") -> str:
    if explicit:
        return explicit
    return "csv" if path.lower().endswith(".csv") else "ndjson"
