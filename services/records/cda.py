"""The header of an HL7 CDA R2 document, read the CI-SIS way: what a document says about itself.

Uploads are checked against their own header (`cda_upload`), so the header must be read
safely from untrusted bytes. lxml is used with a hardened parser: no network, no DTD
loading, no entity substitution, and libxml2's default limits kept (`huge_tree` off:
at most 256 levels of nesting, 10 MB per text node). A DTD, internal or external, is
refused outright, so nothing declared by the document can change what is read; the
size is bounded before parsing. Only the header is read here (the body's text is
indexed by `content`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import grpc
from lxml import etree

from kit.errors import ServiceError, invalid_argument

HL7 = "urn:hl7-org:v3"
NS = {"h": HL7}
#: Root of the national identifier of health professionals (idNat_PS: "8" + RPPS, "0" + ADELI…).
PS_ROOT = "1.2.250.1.71.4.2.1"
#: Root of the national identifier of structures (idNat_Struct: "1" + FINESS, "3" + SIRET…).
STRUCTURE_ROOT = "1.2.250.1.71.4.2.2"
#: Profession/specialty codes of authors ("G15_10/SM26", JDV_J01 / TRE_R01).
PROFESSION_SYSTEM = "1.2.250.1.213.1.1.4.5"

_RPPS_ID = re.compile(r"8([0-9]{11})")
_PROFESSION = re.compile(r"G15_([0-9A-Za-z]+)(?:/([0-9A-Za-z]+))?")
_TS = re.compile(
    r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d{1,4})?(?:([+-])(\d{2})(\d{2}))?"
)


@dataclass(frozen=True)
class Coded:
    """A coded value of the header: @code in @codeSystem ("" when absent)."""

    code: str
    system: str


@dataclass(frozen=True)
class HeaderAuthor:
    """The first `author/assignedAuthor` of the header."""

    national_id: str
    rpps: str
    role: Coded
    profession_code: str
    specialty_code: str
    display_name: str
    institution_id: str
    institution_name: str


@dataclass(frozen=True)
class Header:
    """What the upload check uses; `patient_ids` are every (root, extension) of
    `recordTarget/patientRole/id`, `record_targets` how many patients the header names."""

    unique_id: str
    type: Coded
    title: str
    service_start: datetime | None
    service_stop: datetime | None
    author: HeaderAuthor | None
    confidentiality: Coded
    practice_setting: Coded
    facility_type: Coded
    patient_ids: tuple[tuple[str, str], ...]
    record_targets: int


def _malformed(message: str) -> ServiceError:
    return invalid_argument("CDA_MALFORMED", message, "document.content")


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def parse(content: bytes, max_bytes: int) -> etree._Element:
    """The document's root element, or CDA_TOO_LARGE / CDA_MALFORMED / FORMAT_MISMATCH."""
    if len(content) > max_bytes:
        raise ServiceError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "CDA_TOO_LARGE",
            f"A CDA document is at most {max_bytes} bytes (DMP_MAX_CDA_BYTES).",
        )
    try:
        root = etree.fromstring(content, _parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        raise _malformed(
            f"The CDA is not well-formed XML within the parser's limits "
            f"(line {line}, column {column})."
        ) from exc
    info = root.getroottree().docinfo
    if info.internalDTD is not None or info.externalDTD is not None or info.doctype:
        raise _malformed("A CDA may not carry a DTD (DOCTYPE) nor declare entities.")
    if any(isinstance(node, etree._Entity) for node in root.iter()):
        raise _malformed("A CDA may not carry entity references.")
    if root.tag != f"{{{HL7}}}ClinicalDocument":
        raise invalid_argument(
            "FORMAT_MISMATCH",
            "The content is not a valid DOCUMENT_FORMAT_CDA_XML: "
            "its root is not an HL7 v3 ClinicalDocument.",
            "document.content",
        )
    return root


def hl7_time(value: str, where: str) -> datetime:
    """An HL7 TS (YYYY[MM[DD[HH[MM[SS[.S]]]]]][±ZZZZ]) as an aware datetime; a value
    without an offset is read as UTC, an imprecise one as the start of its period."""
    match = _TS.fullmatch(value.strip())
    if match is None:
        raise _malformed(f"{where} is not an HL7 timestamp (YYYYMMDDHHMMSS+ZZZZ).")
    year, month, day, hour, minute, second, sign, off_h, off_m = match.groups()
    offset = timedelta(hours=int(off_h or 0), minutes=int(off_m or 0))
    zone = timezone(-offset if sign == "-" else offset) if sign else UTC
    try:
        local = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=zone,
        )
    except ValueError as exc:
        raise _malformed(f"{where} is not a valid date.") from exc
    return local.astimezone(UTC)


def _coded(element: etree._Element | None) -> Coded:
    if element is None:
        return Coded("", "")
    return Coded(element.get("code", "").strip(), element.get("codeSystem", "").strip())


def _text(element: etree._Element | None) -> str:
    if element is None:
        return ""
    return " ".join("".join(element.itertext()).split())


def _person_name(person: etree._Element | None) -> str:
    """ "Dr Charles MULLER": the suffix DR/PR as a title, then given names and family name."""
    if person is None:
        return ""
    name = person.find("h:name", NS)
    if name is None:
        return ""
    titles = {"DR": "Dr", "PR": "Pr"}
    parts = [titles.get(_text(s).upper(), "") for s in name.findall("h:suffix", NS)]
    parts += [_text(g) for g in name.findall("h:given", NS)[:1]]
    parts += [_text(f) for f in name.findall("h:family", NS)[:1]]
    return " ".join(p for p in parts if p)


def _structure_id(extension: str) -> str:
    """FINESS ("1" + 9) or SIRET ("3" + 14) without the idNat_Struct prefix; others as given."""
    if re.fullmatch(r"1[0-9A-Za-z]{9}", extension) or re.fullmatch(r"3[0-9]{14}", extension):
        return extension[1:]
    return extension


def _id_under(parent: etree._Element | None, root: str) -> str:
    if parent is None:
        return ""
    for element in parent.findall("h:id", NS):
        if element.get("root") == root:
            return element.get("extension", "").strip()
    return ""


def _author(root: etree._Element) -> HeaderAuthor | None:
    assigned = root.find("h:author/h:assignedAuthor", NS)
    if assigned is None:
        return None
    national_id = _id_under(assigned, PS_ROOT)
    rpps_match = _RPPS_ID.fullmatch(national_id)
    role = _coded(assigned.find("h:code", NS))
    profession = specialty = ""
    if role.system == PROFESSION_SYSTEM:
        coded = _PROFESSION.fullmatch(role.code)
        if coded is not None:
            profession, specialty = coded.group(1), coded.group(2) or ""
    organization = assigned.find("h:representedOrganization", NS)
    institution_name = _text(None if organization is None else organization.find("h:name", NS))
    display = (
        _person_name(assigned.find("h:assignedPerson", NS))
        or _text(assigned.find("h:assignedAuthoringDevice/h:softwareName", NS))
        or institution_name
    )
    return HeaderAuthor(
        national_id=national_id,
        rpps=rpps_match.group(1) if rpps_match else "",
        role=role,
        profession_code=profession,
        specialty_code=specialty,
        display_name=display,
        institution_id=_structure_id(_id_under(organization, STRUCTURE_ROOT)),
        institution_name=institution_name,
    )


def _service_period(root: etree._Element) -> tuple[datetime | None, datetime | None]:
    """The span of every documented act: earliest `low` (or point `value`), latest `high`."""
    lows: list[datetime] = []
    highs: list[datetime] = []
    for time in root.findall("h:documentationOf/h:serviceEvent/h:effectiveTime", NS):
        if time.get("value"):
            lows.append(hl7_time(time.get("value", ""), "serviceEvent effectiveTime"))
        low, high = time.find("h:low", NS), time.find("h:high", NS)
        if low is not None and low.get("value"):
            lows.append(hl7_time(low.get("value", ""), "serviceEvent effectiveTime low"))
        if high is not None and high.get("value"):
            highs.append(hl7_time(high.get("value", ""), "serviceEvent effectiveTime high"))
    return (min(lows) if lows else None), (max(highs) if highs else None)


def _practice_setting(root: etree._Element) -> Coded:
    """The first performer's organisation's standardIndustryClassCode (CI-SIS practiceSetting)."""
    path = (
        "h:documentationOf/h:serviceEvent/h:performer/h:assignedEntity/"
        "h:representedOrganization/h:standardIndustryClassCode"
    )
    return _coded(root.find(path, NS))


def _unique_id(root: etree._Element) -> str:
    element = root.find("h:id", NS)
    if element is None:
        return ""
    extension = element.get("extension", "")
    return element.get("root", "") + (f"^{extension}" if extension else "")


def read_header(content: bytes, max_bytes: int) -> Header:
    """The header of a CDA R2 document (see `parse` for what is refused)."""
    root = parse(content, max_bytes)
    type_code = _coded(root.find("h:code", NS))
    if not type_code.code:
        raise _malformed("The CDA header has no document type (ClinicalDocument/code @code).")
    start, stop = _service_period(root)
    targets = root.findall("h:recordTarget", NS)
    patient_ids = tuple(
        (element.get("root", "").strip(), element.get("extension", "").strip())
        for target in targets
        for element in target.findall("h:patientRole/h:id", NS)
    )
    return Header(
        unique_id=_unique_id(root),
        type=type_code,
        title=_text(root.find("h:title", NS)),
        service_start=start,
        service_stop=stop,
        author=_author(root),
        confidentiality=_coded(root.find("h:confidentialityCode", NS)),
        practice_setting=_practice_setting(root),
        facility_type=_coded(
            root.find(
                "h:componentOf/h:encompassingEncounter/h:location/h:healthCareFacility/h:code", NS
            )
        ),
        patient_ids=patient_ids,
        record_targets=len(targets),
    )
