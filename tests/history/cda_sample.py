"""Turn the CI-SIS CNAM-HR sample (a real-shaped reimbursement history) into claim lines.

The sample's dates are from 2019; they are shifted so the most recent one is a
month ago, which puts the lines inside the 24-month window.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta
from pathlib import Path

from dmp.history.v1 import history_pb2

SAMPLE = Path(__file__).parent / "data" / "CNAM-HR_2021.01.xml"
NS = {"h": "urn:hl7-org:v3"}
SAMPLE_INS = "279035121518989"
VACCINATIONS_SECTION = "11369-6"

CIP = "1.2.250.1.215.200.1.1.1"
UCD = "1.2.250.1.215.200.1.1.2"
ATC_CLASS = "1.2.250.1.215.200.1.2.1"
ATC_VACCINE = "1.2.250.1.215.200.1.2.2"
LPP = "1.2.250.1.215.200.2.1"
GHS = "1.2.250.1.215.200.3.1"
NGAP = "1.2.250.1.215.200.3.3"
CCAM = "1.2.250.1.215.200.3.4"
NABM = "1.2.250.1.215.200.4.1"
RPPS_ROOT = "1.2.250.1.71.4.2.1"
STRUCTURE_ROOT = "1.2.250.1.71.4.2.2"


def _date(value: str) -> date:
    return date(int(value[:4]), int(value[4:6]), int(value[6:8]))


def _proto(value: date) -> history_pb2.Date:
    return history_pb2.Date(year=value.year, month=value.month, day=value.day)


def _first_date(entry: ET.Element) -> date | None:
    for element in entry.iter():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag in ("effectiveTime", "low", "time") and element.get("value"):
            return _date(element.get("value", ""))
    return None


def sample_lines(today: date | None = None) -> list[history_pb2.ClaimLine]:
    root = ET.parse(SAMPLE).getroot()
    document_date = _date(root.find("h:effectiveTime", NS).get("value", ""))  # type: ignore[union-attr]
    shift = (today or date.today()) - timedelta(days=30) - document_date
    lines: list[history_pb2.ClaimLine] = []
    for section in root.iter("{urn:hl7-org:v3}section"):
        code = section.find("h:code", NS)
        vaccines = code is not None and code.get("code") == VACCINATIONS_SECTION
        for entry in section.findall("h:entry", NS):
            codes = {e.get("codeSystem"): e for e in entry.iter() if e.get("codeSystem")}
            care = (_first_date(entry) or document_date) + shift
            line = history_pb2.ClaimLine(line_id=f"CNAMHR-{len(lines):03d}", patient_ins=SAMPLE_INS)
            line.care_date.CopyFrom(_proto(care))
            quantity = entry.find(".//h:quantity", NS)
            count = int(float(quantity.get("value", "1"))) if quantity is not None else 1
            if CIP in codes or UCD in codes:
                product = codes.get(CIP) if CIP in codes else codes[UCD]
                assert product is not None
                atc = codes.get(ATC_VACCINE) if vaccines else codes.get(ATC_CLASS)
                target = line.vaccine if vaccines else line.drug
                if CIP in codes:
                    target.cip13 = product.get("code", "")
                else:
                    line.drug.ucd = product.get("code", "")
                target.atc_code = atc.get("code", "") if atc is not None else ""
                target.label = product.get("displayName", "")
                target.quantity = count
            elif LPP in codes:
                line.medical_device.lpp_code = codes[LPP].get("code", "")
                line.medical_device.label = codes[LPP].get("displayName", "")
                line.medical_device.quantity = count
            elif GHS in codes:
                stay = line.hospital_stay
                stay.ghs_code = codes[GHS].get("code", "")
                stay.label = codes[GHS].get("displayName", "")
                low = entry.find(".//h:effectiveTime/h:low", NS)
                high = entry.find(".//h:effectiveTime/h:high", NS)
                assert low is not None
                admission = _date(low.get("value", "")) + shift
                line.care_date.CopyFrom(_proto(admission))
                stay.admission_date.CopyFrom(_proto(admission))
                if high is not None and high.get("value"):
                    stay.discharge_date.CopyFrom(_proto(_date(high.get("value", "")) + shift))
                org = entry.find(".//h:representedOrganization", NS)
                assert org is not None
                org_id = org.find("h:id", NS)
                finess = org_id.get("extension", "") if org_id is not None else ""
                # Structure ids carry a type prefix: "1" + FINESS.
                stay.institution_finess = finess[1:] if len(finess) == 10 else finess
                name = org.find("h:name", NS)
                stay.institution_name = name.text or "" if name is not None else ""
            elif CCAM in codes or NGAP in codes:
                act = line.medical_act
                ccam = CCAM in codes
                element = codes[CCAM] if ccam else codes[NGAP]
                act.coding_system = (
                    history_pb2.ACT_CODING_SYSTEM_CCAM
                    if ccam
                    else history_pb2.ACT_CODING_SYSTEM_NGAP
                )
                act.code = element.get("code", "")
                act.label = element.get("displayName", "")
                act.coefficient = 0.0 if ccam else 1.0
                act.quantity = 1
            elif NABM in codes:
                line.biology.nabm_code = codes[NABM].get("code", "")
                line.biology.label = codes[NABM].get("displayName", "")
                line.biology.quantity = 1
            else:
                continue
            for element in entry.iter("{urn:hl7-org:v3}id"):
                rpps = element.get("extension", "")
                if element.get("root") == RPPS_ROOT and len(rpps) == 11:
                    line.performer.system = history_pb2.ACTOR_ID_SYSTEM_RPPS
                    line.performer.id = rpps
                    break
            line.billed_amount_cents = 2500
            line.reimbursed_amount_cents = 1750
            lines.append(line)
    return lines
