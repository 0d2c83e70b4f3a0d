"""Advance directives in records (rule 12 at the data): a versioned singleton written by the
patient side or by a professional whose signed scope says consent allowed it, each revision
announced by an event that holds no content; and the vaccination events notify schedules
reminders from."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import grpc
from google.protobuf import field_mask_pb2
from sqlalchemy import select

from dmp.authz.v1 import principal_pb2
from dmp.records.v1 import events_pb2, records_pb2
from services.records.models import outbox
from tests.fixtures.records import RecordsCalls, patient, professional, scope
from tests.records.helpers import expect_error, new_dossier, rid

R = records_pb2
P = principal_pb2
C = grpc.StatusCode
SECRET = "Refus de la réanimation QWERTY"


def _writer(rpps: str = "10000000091") -> P.Principal:
    """A médecin consent allowed to write the directives (granted or médecin traitant)."""
    sc = scope()
    sc.advance_directives_writable = True
    return professional(rpps, sc)


def _emergency(rpps: str = "10000000092", mode: int = P.ACCESS_MODE_BRIS_DE_GLACE) -> P.Principal:
    sc = scope()
    sc.mode = mode  # type: ignore[assignment]
    return professional(rpps, sc)


def _update(name: str, directives: R.AdvanceDirectives, *paths: str, etag: str = "") -> object:
    directives.name = f"{name}/advanceDirectives"
    return R.UpdateAdvanceDirectivesRequest(
        advance_directives=directives,
        update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
        etag=etag,
        request_id=rid(),
    )


async def _events(records: RecordsCalls, subject: str, dossier: str) -> list[bytes]:
    async with records.app.db() as session:
        rows = await session.execute(
            select(outbox.c.payload).where(outbox.c.subject == subject).order_by(outbox.c.id)
        )
        payloads = [bytes(r.payload) for r in rows]
    out = []
    for payload in payloads:
        if subject.endswith("changed"):
            if events_pb2.AdvanceDirectivesChanged.FromString(payload).dossier == dossier:
                out.append(payload)
        elif events_pb2.VaccinationRecorded.FromString(payload).dossier == dossier:
            out.append(payload)
    return out


async def test_each_change_is_a_revision_announced_without_content(records: RecordsCalls) -> None:
    name, ins = await new_dossier(records)
    me = patient(ins)
    empty = await records.call(
        "GetAdvanceDirectives", R.GetAdvanceDirectivesRequest(name=f"{name}/advanceDirectives"), me
    )
    assert empty.name == f"{name}/advanceDirectives"
    assert not empty.revision_id
    first = await records.call(
        "UpdateAdvanceDirectives",
        _update(name, R.AdvanceDirectives(written=True, summary=SECRET, custodian="Mon fils")),
        me,
    )
    assert (first.revision_id, first.written, first.summary) == ("1", True, SECRET)
    assert first.provenance.author.kind == R.AUTHOR_KIND_PATIENT
    # A granted doctor changes the summary only: the rest is carried over.
    doctor = _writer()
    second = await records.call(
        "UpdateAdvanceDirectives",
        _update(name, R.AdvanceDirectives(summary="Révisées"), "summary", etag=first.etag),
        doctor,
    )
    assert (second.revision_id, second.written, second.summary, second.custodian) == (
        "2",
        True,
        "Révisées",
        "Mon fils",
    )
    assert second.provenance.author.kind == R.AUTHOR_KIND_PATIENT
    assert second.provenance.last_updated_by.rpps == "10000000091"
    # A stale etag is refused, nothing written.
    await expect_error(
        records.call(
            "UpdateAdvanceDirectives",
            _update(name, R.AdvanceDirectives(summary="x"), etag=first.etag),
            me,
        ),
        C.ABORTED,
        "ETAG_MISMATCH",
    )
    # History, newest first, page by page.
    page = await records.call(
        "ListAdvanceDirectivesRevisions",
        R.ListAdvanceDirectivesRevisionsRequest(name=f"{name}/advanceDirectives", page_size=1),
        me,
    )
    assert [d.revision_id for d in page.advance_directives] == ["2"]
    rest = await records.call(
        "ListAdvanceDirectivesRevisions",
        R.ListAdvanceDirectivesRevisionsRequest(
            name=f"{name}/advanceDirectives", page_size=1, page_token=page.next_page_token
        ),
        me,
    )
    assert [(d.revision_id, d.summary) for d in rest.advance_directives] == [("1", SECRET)]
    assert not rest.next_page_token
    # The health profile shows the current revision.
    profile = await records.call(
        "GetHealthProfile", R.GetHealthProfileRequest(name=f"{name}/healthProfile"), me
    )
    assert profile.advance_directives.revision_id == "2"
    # One event per revision, naming the record and the revision, never the content.
    events = await _events(records, "dmp.records.advance_directives.changed", name)
    decoded = [events_pb2.AdvanceDirectivesChanged.FromString(e) for e in events]
    assert [(e.revision_id, e.author_kind) for e in decoded] == [
        ("1", R.AUTHOR_KIND_PATIENT),
        ("2", R.AUTHOR_KIND_PROFESSIONAL),
    ]
    assert all(SECRET.encode() not in e and b"Mon fils" not in e for e in events)


async def test_only_the_patient_side_or_an_allowed_doctor_writes(records: RecordsCalls) -> None:
    name, ins = await new_dossier(records)
    # A professional whose scope lacks the flag (a write right alone, an emergency): refused.
    for who in (
        professional("10000000093"),
        _emergency(),
        _emergency(mode=P.ACCESS_MODE_CENTRE_15),
    ):
        await expect_error(
            records.call(
                "UpdateAdvanceDirectives", _update(name, R.AdvanceDirectives(written=True)), who
            ),
            C.PERMISSION_DENIED,
            "ADVANCE_DIRECTIVES_NOT_WRITABLE",
        )
    assert await _events(records, "dmp.records.advance_directives.changed", name) == []
    unwritten = await records.call(
        "GetAdvanceDirectives",
        R.GetAdvanceDirectivesRequest(name=f"{name}/advanceDirectives"),
        patient(ins),
    )
    assert not unwritten.revision_id
    # Both emergency modes read them.
    await records.call(
        "UpdateAdvanceDirectives",
        _update(name, R.AdvanceDirectives(written=True, summary=SECRET)),
        patient(ins),
    )
    for mode in (P.ACCESS_MODE_BRIS_DE_GLACE, P.ACCESS_MODE_CENTRE_15):
        seen = await records.call(
            "GetAdvanceDirectives",
            R.GetAdvanceDirectivesRequest(name=f"{name}/advanceDirectives"),
            _emergency(mode=mode),
        )
        assert seen.summary == SECRET


async def test_bad_input_is_refused_and_writes_nothing(records: RecordsCalls) -> None:
    name, ins = await new_dossier(records)
    other, _ = await new_dossier(records)
    me = patient(ins)
    cases = [
        (
            _update(name, R.AdvanceDirectives(written=True), "written", "note"),
            "INVALID_UPDATE_MASK",
        ),
        (
            _update(name, R.AdvanceDirectives(document=f"{other}/documents/{'a' * 32}")),
            "INVALID_ITEM",
        ),
        (_update(name, R.AdvanceDirectives(summary="x" * 4001)), "INVALID_ITEM"),
        (
            _update(name, R.AdvanceDirectives(written_date=R.Date(year=2024, month=2, day=30))),
            "INVALID_DATE",
        ),
    ]
    for request, reason in cases:
        await expect_error(
            records.call("UpdateAdvanceDirectives", request, me), C.INVALID_ARGUMENT, reason
        )
    bad_name = R.UpdateAdvanceDirectivesRequest(
        advance_directives=R.AdvanceDirectives(name=f"{name}/healthProfile"), request_id=rid()
    )
    await expect_error(
        records.call("UpdateAdvanceDirectives", bad_name, me), C.INVALID_ARGUMENT, "INVALID_NAME"
    )
    # The health profile no longer writes them.
    profile = R.HealthProfile(name=f"{name}/healthProfile")
    profile.advance_directives.CopyFrom(R.AdvanceDirectives(written=True))
    await expect_error(
        records.call(
            "UpdateHealthProfile",
            R.UpdateHealthProfileRequest(health_profile=profile, request_id=rid()),
            _writer(),
        ),
        C.INVALID_ARGUMENT,
        "ADVANCE_DIRECTIVES_NOT_IN_PROFILE",
    )
    masked = R.UpdateHealthProfileRequest(
        health_profile=R.HealthProfile(name=f"{name}/healthProfile"),
        update_mask=field_mask_pb2.FieldMask(paths=["advance_directives"]),
        request_id=rid(),
    )
    await expect_error(
        records.call("UpdateHealthProfile", masked, me),
        C.INVALID_ARGUMENT,
        "ADVANCE_DIRECTIVES_NOT_IN_PROFILE",
    )
    assert await _events(records, "dmp.records.advance_directives.changed", name) == []
    current = await records.call(
        "GetAdvanceDirectives", R.GetAdvanceDirectivesRequest(name=f"{name}/advanceDirectives"), me
    )
    assert not current.revision_id


def _vaccination(code: str, given: date, booster: date | None = None) -> R.Vaccination:
    vac = R.Vaccination(
        vaccine=R.CodedConcept(code=code, display=f"Vaccin {code} QWERTY"),
        administration_date=R.Date(year=given.year, month=given.month, day=given.day),
    )
    if booster is not None:
        vac.booster_date.CopyFrom(R.Date(year=booster.year, month=booster.month, day=booster.day))
    return vac


async def test_vaccination_events_carry_the_booster_date_and_what_they_fulfil(
    records: RecordsCalls,
) -> None:
    name, _ins = await new_dossier(records)
    nurse = professional("10000000094")
    today = datetime.now(UTC).date()
    first = await records.call(
        "CreateVaccination",
        R.CreateVaccinationRequest(
            parent=name,
            vaccination=_vaccination(
                "J07AM51", today - timedelta(days=300), today + timedelta(days=65)
            ),
            request_id=rid(),
        ),
        nurse,
    )
    other = await records.call(
        "CreateVaccination",
        R.CreateVaccinationRequest(
            parent=name,
            vaccination=_vaccination(
                "J07BB02", today - timedelta(days=200), today + timedelta(days=165)
            ),
            request_id=rid(),
        ),
        nurse,
    )
    booster = await records.call(
        "CreateVaccination",
        R.CreateVaccinationRequest(
            parent=name, vaccination=_vaccination("J07AM51", today), request_id=rid()
        ),
        nurse,
    )
    payloads = await _events(records, "dmp.records.vaccination.recorded", name)
    events = [events_pb2.VaccinationRecorded.FromString(p) for p in payloads]
    assert [e.vaccination for e in events] == [first.name, other.name, booster.name]
    due = today + timedelta(days=65)
    assert (
        events[0].booster_date.year,
        events[0].booster_date.month,
        events[0].booster_date.day,
    ) == (
        due.year,
        due.month,
        due.day,
    )
    assert list(events[0].fulfils) == []
    assert list(events[1].fulfils) == []
    # The third is the first's booster (same vaccine, given later); not the other vaccine's.
    assert list(events[2].fulfils) == [first.name]
    assert not events[2].HasField("booster_date")
    assert all(b"QWERTY" not in p and b"J07" not in p for p in payloads)
