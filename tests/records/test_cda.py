"""CDA uploads checked against their header (issue 15): each CI-SIS sample enters its
patient's record with the header's metadata and is refused in anyone else's; a header
that contradicts the upload, or that cannot be read safely, writes nothing.

These tests run their own records server: the shared one caps documents at 256 KiB and
the imaging sample is 344 KiB; its own database also keeps the sample patient's record
(one per INS) to this module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC

import grpc
import pytest
import pytest_asyncio

from dmp.authz.v1 import principal_pb2
from dmp.records.v1 import records_pb2
from dmp_dev.testing import principals
from dmp_dev.testing.databases import DatabaseFactory
from kit import ins as kit_ins
from kit.server import start_app
from services.records.app import RecordsApp
from services.records.settings import RecordsSettings
from tests.fixtures.records import RecordsCalls, desk, make_ins, patient, scope
from tests.records.cda_samples import (
    SAMPLE_INS,
    SAMPLES,
    Expected,
    cda_document,
    for_patient,
    sample,
)
from tests.records.helpers import create_request, expect_error, rid

R = records_pb2
P = principal_pb2
C = grpc.StatusCode
MAX_CDA_BYTES = 512 * 1024
VAC = "VAC-NOTE_2023.01.xml"
LDL = "LDL-SES_2022.01.xml"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cda_records(databases: DatabaseFactory, nats_url: str) -> AsyncIterator[RecordsCalls]:
    settings = RecordsSettings(
        database_url=await databases.migrated("records", "records_cda"),
        nats_url=nats_url,
        grpc_port=0,
        max_document_bytes=1024 * 1024,
        max_cda_bytes=MAX_CDA_BYTES,
        log_json=False,
        log_level="WARNING",
    )
    running = await start_app(RecordsApp(settings))
    channel = grpc.aio.insecure_channel(
        running.target, options=[("grpc.max_send_message_length", 4 * 1024 * 1024)]
    )
    yield RecordsCalls(running, channel)
    await channel.close()
    await running.stop(0.5)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sample_record(cda_records: RecordsCalls) -> str:
    """The record of the samples' patient, created at a desk with the traits they carry."""
    assert kit_ins.validate(SAMPLE_INS) == SAMPLE_INS  # the test INS has a valid key
    traits = R.PatientIdentity(
        birth_family_name="PAT-TROIS",
        birth_given_names=["DOMINIQUE", "MARIE-LOUISE"],
        birth_date=R.Date(year=1979, month=3, day=28),
        sex=R.SEX_FEMALE,
        birth_place_code="51215",
    )
    dossier = await cda_records.call(
        "CreateDossier", create_request(SAMPLE_INS, identity=traits), desk()
    )
    return str(dossier.name)


def depositor(expected: Expected) -> P.Principal:
    """The header's author (with the profession and specialty it gives), or the AMO feeder."""
    if not expected.author_rpps:
        feeder = principals.service()
        feeder.scope.CopyFrom(scope(readable=(), writable=("60",)))
        return feeder
    author = principals.professional(expected.author_rpps, expected.profession, expected.specialty)
    author.scope.CopyFrom(scope())
    return author


async def _create(
    records: RecordsCalls, parent: str, document: R.Document, who: P.Principal
) -> R.Document:
    request = R.CreateDocumentRequest(parent=parent, document=document, request_id=rid())
    created: R.Document = await records.call("CreateDocument", request, who)
    return created


async def _read(records: RecordsCalls, name: str) -> R.Document:
    request = R.GetDocumentRequest(name=name, view=R.DOCUMENT_VIEW_BASIC)
    got: R.Document = await records.call("GetDocument", request, patient(SAMPLE_INS))
    return got


@pytest.mark.parametrize("name", sorted(SAMPLES))
async def test_each_sample_enters_its_patients_record_with_its_header_metadata(
    cda_records: RecordsCalls, sample_record: str, name: str
) -> None:
    expected = SAMPLES[name]
    created = await _create(
        cda_records, sample_record, cda_document(sample(name)), depositor(expected)
    )
    got = await _read(cda_records, created.name)
    assert (got.type_code, got.class_code, got.title) == (
        expected.type_code,
        expected.class_code,
        expected.title,
    )
    assert got.service_start_time.ToDatetime(tzinfo=UTC) == expected.start
    if expected.stop is None:
        assert not got.HasField("service_stop_time")
    else:
        assert got.service_stop_time.ToDatetime(tzinfo=UTC) == expected.stop
    assert (got.practice_setting_code, got.facility_type_code) == (
        expected.practice_setting,
        expected.facility_type,
    )
    author = got.author
    assert author.display_name == expected.author_name
    if expected.author_rpps:
        assert author.kind == R.AUTHOR_KIND_PROFESSIONAL
        assert (author.rpps, author.profession_code, author.specialty_code) == (
            expected.author_rpps,
            expected.profession,
            expected.specialty,
        )
        assert (author.institution_id, author.institution_name) == (
            expected.institution_id,
            expected.institution_name,
        )
    else:
        assert author.kind == R.AUTHOR_KIND_INSURANCE
    assert got.format == R.DOCUMENT_FORMAT_CDA_XML
    assert got.size_bytes == len(sample(name))


@pytest.mark.parametrize("name", sorted(SAMPLES))
async def test_each_sample_is_refused_in_another_patients_record(
    cda_records: RecordsCalls, name: str
) -> None:
    other_ins = make_ins()
    other = await cda_records.call("CreateDossier", create_request(other_ins), desk())
    before = await cda_records.count("documents")
    err = await expect_error(
        _create(cda_records, other.name, cda_document(sample(name)), depositor(SAMPLES[name])),
        C.FAILED_PRECONDITION,
        "CDA_PATIENT_MISMATCH",
    )
    assert "not this record's patient" in (err.details() or "")
    assert SAMPLE_INS not in (err.details() or "")  # no identifier echoed
    assert await cda_records.count("documents") == before
    # The same document written about that patient is accepted there.
    about_other = cda_document(for_patient(name, other_ins))
    await _create(cda_records, other.name, about_other, depositor(SAMPLES[name]))


async def test_declared_metadata_wins_but_a_contradicting_type_is_refused(
    cda_records: RecordsCalls, sample_record: str
) -> None:
    author = depositor(SAMPLES[LDL])
    declared = cda_document(sample(LDL), type_code="11490-0", title="Lettre de sortie")
    got = await _read(
        cda_records, (await _create(cda_records, sample_record, declared, author)).name
    )
    assert (got.type_code, got.title) == ("11490-0", "Lettre de sortie")
    before = await cda_records.count("documents")
    contradicting = cda_document(sample(LDL), type_code="11488-4")
    err = await expect_error(
        _create(cda_records, sample_record, contradicting, author),
        C.INVALID_ARGUMENT,
        "CDA_TYPE_MISMATCH",
    )
    assert "11488-4" in (err.details() or "")
    assert "11490-0" in (err.details() or "")
    assert await cda_records.count("documents") == before


async def test_the_header_author_must_be_the_depositing_professional(
    cda_records: RecordsCalls, sample_record: str
) -> None:
    before = await cda_records.count("documents")
    colleague = principals.professional("10000000017", "10", "SM53")
    colleague.scope.CopyFrom(scope())
    await expect_error(
        _create(cda_records, sample_record, cda_document(sample(LDL)), colleague),
        C.INVALID_ARGUMENT,
        "CDA_AUTHOR_MISMATCH",
    )
    assert await cda_records.count("documents") == before


async def test_replace_checks_the_new_versions_header(
    cda_records: RecordsCalls, sample_record: str
) -> None:
    author = depositor(SAMPLES[LDL])
    first = await _create(cda_records, sample_record, cda_document(sample(LDL)), author)
    before = await cda_records.count("documents")
    someone_else = cda_document(for_patient(LDL, make_ins()))
    await expect_error(
        cda_records.call(
            "ReplaceDocument",
            R.ReplaceDocumentRequest(name=first.name, document=someone_else, request_id=rid()),
            author,
        ),
        C.FAILED_PRECONDITION,
        "CDA_PATIENT_MISMATCH",
    )
    assert await cda_records.count("documents") == before
    second = await cda_records.call(
        "ReplaceDocument",
        R.ReplaceDocumentRequest(
            name=first.name, document=cda_document(sample(LDL)), request_id=rid()
        ),
        author,
    )
    got = await _read(cda_records, second.name)
    assert (got.version, got.type_code, got.title) == (2, "11490-0", SAMPLES[LDL].title)


async def test_staff_who_may_write_nothing_learn_nothing_about_the_content(
    cda_records: RecordsCalls,
) -> None:
    other = await cda_records.call("CreateDossier", create_request(make_ins()), desk())
    await expect_error(
        _create(cda_records, other.name, cda_document(sample(VAC), type_code="87273-9"), desk()),
        C.PERMISSION_DENIED,
        "CLASS_NOT_WRITABLE",
    )


def _vac(old: bytes, new: bytes, count: int = -1) -> bytes:
    content = sample(VAC)
    assert old in content
    return content.replace(old, new, count)


_ROOT = b"<ClinicalDocument "
_INS_ID = b'<id extension="279035121518989" root="1.2.250.1.213.1.4.10"/>'
_LOL = (
    b'<!DOCTYPE ClinicalDocument [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(
        b"<!ENTITY %s '%s'>" % (chr(98 + i).encode(), (b"&%s;" % chr(97 + i).encode()) * 10)
        for i in range(8)
    )
    + b"]>"
)


def _bad_cases() -> list[tuple[str, bytes, int, C, str]]:
    fmt = R.DOCUMENT_FORMAT_CDA_XML
    deep = b"<title>" + b"<x>" * 300 + b"y" + b"</x>" * 300 + b"</title>"
    record_target = sample(VAC).split(b"<recordTarget>")[1].split(b"</recordTarget>")[0]
    two_patients = b"<recordTarget>" + record_target + b"</recordTarget>\n  <recordTarget>"
    padding = b"<!-- " + b"x" * MAX_CDA_BYTES + b" -->\n"
    return [
        (
            "dtd",
            _vac(_ROOT, b"<!DOCTYPE ClinicalDocument>" + _ROOT),
            fmt,
            C.INVALID_ARGUMENT,
            "CDA_MALFORMED",
        ),
        (
            "internal entity",
            _vac(_ROOT, b'<!DOCTYPE ClinicalDocument [<!ENTITY t "x">]>' + _ROOT).replace(
                b"NOTE DE VACCINATION", b"&t;"
            ),
            fmt,
            C.INVALID_ARGUMENT,
            "CDA_MALFORMED",
        ),
        (
            "billion laughs",
            _vac(_ROOT, _LOL + _ROOT).replace(b"NOTE DE VACCINATION", b"&i;"),
            fmt,
            C.INVALID_ARGUMENT,
            "CDA_MALFORMED",
        ),
        (
            "external entity",
            _vac(
                _ROOT,
                b'<!DOCTYPE ClinicalDocument [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + _ROOT,
            ).replace(b"NOTE DE VACCINATION", b"&e;"),
            fmt,
            C.INVALID_ARGUMENT,
            "CDA_MALFORMED",
        ),
        (
            "undeclared entity",
            _vac(b"NOTE DE VACCINATION", b"&e;"),
            fmt,
            C.INVALID_ARGUMENT,
            "CDA_MALFORMED",
        ),
        ("truncated", sample(VAC)[:-300], fmt, C.INVALID_ARGUMENT, "CDA_MALFORMED"),
        (
            "too deep",
            _vac(b"<title>NOTE DE VACCINATION</title>", deep),
            fmt,
            C.INVALID_ARGUMENT,
            "CDA_MALFORMED",
        ),
        (
            "bad service time",
            _vac(b'<low value="20210409153500+0100" />', b'<low value="2021-04-09" />'),
            fmt,
            C.INVALID_ARGUMENT,
            "CDA_MALFORMED",
        ),
        ("oversized", _vac(_ROOT, padding + _ROOT), fmt, C.RESOURCE_EXHAUSTED, "CDA_TOO_LARGE"),
        ("no INS", _vac(_INS_ID, b""), fmt, C.INVALID_ARGUMENT, "CDA_PATIENT_MISSING"),
        (
            "INS under an unknown root",
            _vac(_INS_ID, _INS_ID.replace(b"1.2.250.1.213.1.4.10", b"1.2.3.4")),
            fmt,
            C.INVALID_ARGUMENT,
            "CDA_PATIENT_MISSING",
        ),
        (
            "two patients",
            _vac(b"<recordTarget>", two_patients, 1),
            fmt,
            C.FAILED_PRECONDITION,
            "CDA_PATIENT_MISMATCH",
        ),
        (
            "unknown type",
            _vac(b'<code code="87273-9"', b'<code code="99999-9"', 1),
            fmt,
            C.INVALID_ARGUMENT,
            "CDA_TYPE_UNKNOWN",
        ),
        (
            "very restricted",
            _vac(b'<confidentialityCode code="N"', b'<confidentialityCode code="V"'),
            fmt,
            C.INVALID_ARGUMENT,
            "CDA_CONFIDENTIALITY_UNSUPPORTED",
        ),
        (
            "unknown practice setting",
            _vac(b'code="AMBULATOIRE"', b'code="NOPE"'),
            fmt,
            C.INVALID_ARGUMENT,
            "CDA_UNKNOWN_CODE",
        ),
        (
            "not a ClinicalDocument",
            _vac(b"<ClinicalDocument", b"<Other").replace(b"</ClinicalDocument>", b"</Other>"),
            fmt,
            C.INVALID_ARGUMENT,
            "FORMAT_MISMATCH",
        ),
        (
            "CDA declared as text",
            sample(VAC),
            R.DOCUMENT_FORMAT_TEXT_PLAIN,
            C.INVALID_ARGUMENT,
            "CDA_FORMAT_REQUIRED",
        ),
    ]


@pytest.mark.parametrize(
    ("label", "content", "fmt", "code", "reason"),
    _bad_cases(),
    ids=lambda v: v if isinstance(v, str) and not v.isupper() else "",
)
async def test_a_header_that_cannot_be_trusted_writes_nothing(
    cda_records: RecordsCalls,
    sample_record: str,
    label: str,
    content: bytes,
    fmt: int,
    code: grpc.StatusCode,
    reason: str,
) -> None:
    before = await cda_records.count("documents")
    document = R.Document(content=content, format=fmt, title=label)
    await expect_error(
        _create(cda_records, sample_record, document, depositor(SAMPLES[VAC])), code, reason
    )
    assert await cda_records.count("documents") == before
