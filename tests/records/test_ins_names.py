"""Issue 15 in records: a record named by its patient's INS (`patients/{ins}/dossier`),
what a professional's creation keeps (institution, oppositions, the creator in the event),
and the insurer's count of creations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import nats

from dmp.records.v1 import events_pb2, records_pb2
from kit import finess
from kit.rpps import luhn_valid
from tests.fixtures.records import (
    RecordsCalls,
    admin_staff,
    desk,
    make_ins,
    patient,
    professional,
)
from tests.records.helpers import create_request, doc, expect_error, new_dossier, rid
from tests.waits import until

R = records_pb2
C = grpc.StatusCode


def a_finess(department: str = "75") -> str:
    body = f"{department}{uuid.uuid4().int % 10**6:06d}"
    return body + finess.check_digit(body)


def a_siret() -> str:
    body = f"{uuid.uuid4().int % 10**13:013d}"
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


async def test_documents_profile_and_vaccinations_by_ins_name(records: RecordsCalls) -> None:
    name, ins = await new_dossier(records)
    alias = f"patients/{ins}/dossier"
    author = professional("10000000201")
    created = await records.call(
        "CreateDocument",
        R.CreateDocumentRequest(parent=alias, document=doc(), request_id=rid()),
        author,
    )
    assert created.name.startswith(name + "/documents/")
    listed = await records.call("ListDocuments", R.ListDocumentsRequest(parent=alias), author)
    assert [d.name for d in listed.documents] == [created.name]
    found = await records.call(
        "SearchDocuments", R.SearchDocumentsRequest(parent=alias, query="tension"), author
    )
    assert [r.document.name for r in found.results] == [created.name]
    profile = await records.call(
        "GetHealthProfile", R.GetHealthProfileRequest(name=f"{alias}/healthProfile"), patient(ins)
    )
    assert profile.name == f"{name}/healthProfile"
    vaccinations = await records.call(
        "ListVaccinations", R.ListVaccinationsRequest(parent=alias), author
    )
    assert list(vaccinations.vaccinations) == []


async def test_bad_or_unknown_ins_names(records: RecordsCalls) -> None:
    good = make_ins()
    wrong_key = f"{good[:13]}{(int(good[13:]) % 97) + 1:02d}"
    author = professional("10000000201")
    await expect_error(
        records.call(
            "ListDocuments",
            R.ListDocumentsRequest(parent=f"patients/{wrong_key}/dossier"),
            author,
        ),
        C.INVALID_ARGUMENT,
        "INS_KEY_MISMATCH",
    )
    await expect_error(
        records.call(
            "GetHealthProfile",
            R.GetHealthProfileRequest(name=f"patients/{good}/healthProfile"),
            author,
        ),
        C.INVALID_ARGUMENT,
        "INVALID_NAME",
    )
    await expect_error(
        records.call(
            "CreateDocument",
            R.CreateDocumentRequest(
                parent=f"patients/{make_ins()}/dossier", document=doc(), request_id=rid()
            ),
            author,
        ),
        C.NOT_FOUND,
        "NOT_FOUND",
    )


async def _created_events(nats_url: str, action: Any) -> list[events_pb2.DossierCreated]:
    nc = await nats.connect(nats_url)
    got: list[events_pb2.DossierCreated] = []

    async def collect(msg: Any) -> None:
        got.append(events_pb2.DossierCreated.FromString(msg.data))

    sub = await nc.subscribe("dmp.records.dossier.created", cb=collect)
    try:
        dossier = await action()
        await until(lambda: any(e.dossier == dossier for e in got), "the creation event")
    finally:
        await sub.unsubscribe()
        await nc.close()
    return [e for e in got if e.dossier == dossier]


async def test_a_professional_creation_names_its_creator_and_the_oppositions(
    records: RecordsCalls, nats_url: str
) -> None:
    request = create_request(make_ins(), "professional")
    pharmacy = a_finess("13")
    request.professional.institution_id = f" {pharmacy} "
    request.emergency_oppositions.oppose_bris_de_glace = True
    creator = professional("10000000219")

    async def create() -> str:
        dossier = await records.call("CreateDossier", request, creator)
        return str(dossier.name)

    [event] = await _created_events(nats_url, create)
    assert event.creation_channel == R.CREATION_CHANNEL_PROFESSIONAL
    assert (event.creating_professional.rpps, event.creating_professional.institution_id) == (
        "10000000219",
        pharmacy,
    )
    assert event.creating_professional.profession_code == creator.profession_code
    assert (
        event.emergency_oppositions.oppose_bris_de_glace,
        event.emergency_oppositions.oppose_centre_15,
    ) == (True, False)

    async def at_desk() -> str:
        dossier = await records.call("CreateDossier", create_request(make_ins()), desk())
        return str(dossier.name)

    [desk_event] = await _created_events(nats_url, at_desk)
    assert not desk_event.HasField("creating_professional")
    assert not desk_event.HasField("emergency_oppositions")


async def test_a_malformed_institution_writes_nothing(records: RecordsCalls) -> None:
    before = (await records.count("dossiers"), await records.count("outbox"))
    good = a_finess()
    wrong_key = good[:8] + str((int(good[8]) + 1) % 10)
    siret = a_siret()
    wrong_siret = siret[:13] + str((int(siret[13]) + 1) % 10)
    for value, reason in (
        ("PHARMACIE", "INVALID_INSTITUTION_ID"),
        ("2A0000017", "INVALID_INSTITUTION_ID"),
        (wrong_key, "FINESS_CHECK_DIGIT"),
        (wrong_siret, "SIRET_CHECK_DIGIT"),
    ):
        request = create_request(make_ins(), "professional")
        request.professional.institution_id = value
        await expect_error(
            records.call("CreateDossier", request, professional()), C.INVALID_ARGUMENT, reason
        )
    assert (await records.count("dossiers"), await records.count("outbox")) == before


def _window(request: R.CountDossierCreationsRequest, start: datetime, end: datetime) -> None:
    request.start_time.FromDatetime(start)
    request.end_time.FromDatetime(end)


async def test_the_insurer_counts_creations_per_professional_and_institution(
    records: RecordsCalls,
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=5)
    pharmacy = a_finess("13")
    other = a_siret()
    first, second = professional("10000000227"), professional("10000000235")
    for creator, institution in ((first, pharmacy), (first, pharmacy), (second, other)):
        request = create_request(make_ins(), "professional")
        request.professional.institution_id = institution
        await records.call("CreateDossier", request, creator)
    await records.call("CreateDossier", create_request(make_ins()), desk())  # no fee: not counted
    end = datetime.now(UTC) + timedelta(seconds=5)
    request = R.CountDossierCreationsRequest(institution_id=pharmacy)
    _window(request, start, end)
    counts = await records.call("CountDossierCreations", request, desk())
    assert [(c.creator_rpps, c.dossier_count) for c in counts.creators] == [("10000000227", 2)]
    assert [(i.institution_id, i.dossier_count) for i in counts.institutions] == [(pharmacy, 2)]
    assert counts.total_count == 2
    by_second = R.CountDossierCreationsRequest(creator_rpps="10000000235")
    _window(by_second, start, end)
    counts = await records.call("CountDossierCreations", by_second, desk())
    assert [(i.institution_id, i.dossier_count) for i in counts.institutions] == [(other, 1)]
    # Outside the window: nothing.
    before = R.CountDossierCreationsRequest(institution_id=pharmacy)
    _window(before, start - timedelta(days=2), start)
    assert (await records.call("CountDossierCreations", before, desk())).total_count == 0


async def test_count_requests_are_checked(records: RecordsCalls) -> None:
    now = datetime.now(UTC)
    cases: list[tuple[R.CountDossierCreationsRequest, str]] = []
    cases.append((R.CountDossierCreationsRequest(), "WINDOW_REQUIRED"))
    backwards = R.CountDossierCreationsRequest()
    _window(backwards, now, now - timedelta(days=1))
    cases.append((backwards, "INVALID_WINDOW"))
    long = R.CountDossierCreationsRequest()
    _window(long, now - timedelta(days=400), now)
    cases.append((long, "WINDOW_TOO_LONG"))
    bad_rpps = R.CountDossierCreationsRequest(creator_rpps="12")
    _window(bad_rpps, now - timedelta(days=1), now)
    cases.append((bad_rpps, "INVALID_RPPS"))
    bad_institution = R.CountDossierCreationsRequest(institution_id="x")
    _window(bad_institution, now - timedelta(days=1), now)
    cases.append((bad_institution, "INVALID_INSTITUTION_ID"))
    for request, reason in cases:
        await expect_error(
            records.call("CountDossierCreations", request, desk()), C.INVALID_ARGUMENT, reason
        )
    ok = R.CountDossierCreationsRequest()
    _window(ok, now - timedelta(days=1), now)
    for caller in (professional(), admin_staff(), patient(make_ins())):
        await expect_error(
            records.call("CountDossierCreations", ok, caller),
            C.PERMISSION_DENIED,
            "ACTION_NOT_ALLOWED",
        )
