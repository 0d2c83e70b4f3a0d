"""Record lifecycle: three creation channels, minors, one per INS, close,
reactivate, terms of use gate (docs/ARCHITECTURE.md: access rules 9-11)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc

from dmp.records.v1 import records_pb2
from kit.errors import error_info
from services.records import lifecycle
from tests.fixtures.records import (
    RecordsCalls,
    admin_staff,
    desk,
    make_ins,
    patient,
    professional,
    representative,
)
from tests.records.helpers import (
    add_doc,
    create_request,
    doc,
    expect_error,
    identity,
    new_dossier,
    rid,
)

R = records_pb2
C = grpc.StatusCode


async def test_create_online_by_the_patient(records: RecordsCalls) -> None:
    ins = make_ins()
    dossier = await records.call("CreateDossier", create_request(ins, "online"), patient(ins))
    assert dossier.state == R.DOSSIER_STATE_ACTIVE
    assert dossier.creation_channel == R.CREATION_CHANNEL_ONLINE
    assert dossier.name.startswith("dossiers/")
    assert ins not in dossier.name
    assert dossier.accepted_terms_version == records.settings.terms_version
    got = await records.call("GetDossier", R.GetDossierRequest(name=dossier.name), patient(ins))
    assert got.patient_ins == ins


async def test_create_at_desk_and_by_professional(records: RecordsCalls) -> None:
    ins1, ins2 = make_ins(), make_ins()
    d1 = await records.call("CreateDossier", create_request(ins1, "desk"), desk())
    d2 = await records.call("CreateDossier", create_request(ins2, "professional"), professional())
    assert d1.creation_channel == R.CREATION_CHANNEL_CPAM_DESK
    assert d2.creation_channel == R.CREATION_CHANNEL_PROFESSIONAL


async def test_a_patient_creates_only_their_own_record(records: RecordsCalls) -> None:
    ins = make_ins()
    before = await records.count("dossiers")
    await expect_error(
        records.call("CreateDossier", create_request(ins, "online"), patient(make_ins())),
        C.PERMISSION_DENIED,
        "NOT_OWN_RECORD",
    )
    assert await records.count("dossiers") == before


async def test_channel_must_match_the_caller(records: RecordsCalls) -> None:
    ins = make_ins()
    await expect_error(
        records.call("CreateDossier", create_request(ins, "desk"), professional()),
        C.FAILED_PRECONDITION,
        "CHANNEL_NOT_ALLOWED",
    )
    await expect_error(
        records.call("CreateDossier", create_request(ins, "online"), admin_staff()),
        C.PERMISSION_DENIED,
        "PRINCIPAL_KIND_NOT_ALLOWED",
    )


async def test_consent_must_be_attested(records: RecordsCalls) -> None:
    req = create_request(make_ins(), "professional")
    req.professional.consent.consent_obtained = False
    before = await records.count("dossiers")
    await expect_error(
        records.call("CreateDossier", req, professional()),
        C.INVALID_ARGUMENT,
        "CONSENT_NOT_ATTESTED",
    )
    assert await records.count("dossiers") == before


async def test_one_record_per_ins(records: RecordsCalls) -> None:
    _, ins = await new_dossier(records)
    before = (await records.count("dossiers"), await records.count("outbox"))
    await expect_error(
        records.call("CreateDossier", create_request(ins, "professional"), professional()),
        C.ALREADY_EXISTS,
        "DOSSIER_ALREADY_EXISTS",
    )
    assert (await records.count("dossiers"), await records.count("outbox")) == before


async def test_invalid_ins_is_refused(records: RecordsCalls) -> None:
    before = await records.count("dossiers")
    good = make_ins()
    bad_key = good[:13] + f"{(int(good[13:]) % 97) + 1:02d}"
    await expect_error(
        records.call("CreateDossier", create_request(bad_key), desk()),
        C.INVALID_ARGUMENT,
        "INS_KEY_MISMATCH",
    )
    await expect_error(
        records.call("CreateDossier", create_request("12345"), desk()),
        C.INVALID_ARGUMENT,
        "INS_MALFORMED",
    )
    assert await records.count("dossiers") == before


async def test_corsican_ins_is_accepted(records: RecordsCalls) -> None:
    nir = "180052A" + f"{next_seq():06d}"
    ins = f"{nir}{97 - int(nir.replace('2A', '19')) % 97:02d}"  # by hand: checks kit.ins
    dossier = await records.call("CreateDossier", create_request(ins), desk())
    assert dossier.patient_ins == ins


_seq = iter(range(500000, 600000))


def next_seq() -> int:
    return next(_seq)


def _rep(ins: str) -> R.LegalRepresentative:
    return R.LegalRepresentative(
        role=R.REPRESENTATIVE_ROLE_PARENT, family_name="DURAND", given_name="Paul", ins=ins
    )


async def test_minor_needs_assisted_creation_and_a_representative(records: RecordsCalls) -> None:
    year = datetime.now(UTC).year - 10
    ins = make_ins(year=year % 100)
    child = identity((year, 3, 1))
    before = await records.count("dossiers")
    await expect_error(
        records.call("CreateDossier", create_request(ins, "online", identity=child), patient(ins)),
        C.FAILED_PRECONDITION,
        "MINOR_REQUIRES_ASSISTED_CREATION",
    )
    await expect_error(
        records.call("CreateDossier", create_request(ins, "desk", identity=child), desk()),
        C.INVALID_ARGUMENT,
        "LEGAL_REPRESENTATIVE_REQUIRED",
    )
    assert await records.count("dossiers") == before
    parent_ins = make_ins()
    dossier = await records.call(
        "CreateDossier",
        create_request(ins, "professional", identity=child, reps=[_rep(parent_ins)]),
        professional(),
    )
    assert dossier.minor
    rep = dossier.legal_representatives[0]
    assert rep.representative_id
    assert rep.access_end_time.ToDatetime(UTC).year == year + 18
    # The representative acts for the minor (rule 11).
    got = await records.call(
        "GetDossier", R.GetDossierRequest(name=dossier.name), representative(parent_ins)
    )
    assert got.name == dossier.name
    # A stranger learns nothing (AIP-211).
    await expect_error(
        records.call("GetDossier", R.GetDossierRequest(name=dossier.name), patient(make_ins())),
        C.NOT_FOUND,
    )


async def test_lookup_by_ins_alias(records: RecordsCalls) -> None:
    name, ins = await new_dossier(records)
    got = await records.call(
        "GetDossier", R.GetDossierRequest(name=f"patients/{ins}/dossier"), professional()
    )
    assert got.name == name
    await expect_error(
        records.call("GetDossier", R.GetDossierRequest(name="dossiers/../x"), professional()),
        C.INVALID_ARGUMENT,
        "INVALID_NAME",
    )


async def test_close_and_reactivate(records: RecordsCalls) -> None:
    name, ins = await new_dossier(records)
    me = patient(ins)
    await expect_error(
        records.call("CloseDossier", R.CloseDossierRequest(name=name, request_id=rid()), me),
        C.INVALID_ARGUMENT,
        "CLOSE_REASON_REQUIRED",
    )
    await expect_error(
        records.call(
            "CloseDossier",
            R.CloseDossierRequest(
                name=name, reason=R.CLOSE_REASON_PATIENT_REQUEST, request_id=rid()
            ),
            professional(),
        ),
        C.PERMISSION_DENIED,
        "NOT_RECORD_MANAGER",
    )
    closed = await records.call(
        "CloseDossier",
        R.CloseDossierRequest(name=name, reason=R.CLOSE_REASON_PATIENT_REQUEST, request_id=rid()),
        me,
    )
    assert closed.state == R.DOSSIER_STATE_CLOSED
    years = closed.purge_time.ToDatetime(UTC).year - closed.close_time.ToDatetime(UTC).year
    assert years == 10
    # Rule 9: every access but reactivation is refused; a create on a closed record too.
    before = await records.count("documents")
    await expect_error(add_doc(records, name), C.FAILED_PRECONDITION, "DOSSIER_CLOSED")
    assert await records.count("documents") == before
    await expect_error(
        records.call("ListDocuments", R.ListDocumentsRequest(parent=name), professional()),
        C.FAILED_PRECONDITION,
        "DOSSIER_CLOSED",
    )
    await expect_error(
        records.call("GetDossier", R.GetDossierRequest(name=name), professional()),
        C.FAILED_PRECONDITION,
        "DOSSIER_CLOSED",
    )
    # The patient still sees it (so they can reactivate it).
    assert (
        await records.call("GetDossier", R.GetDossierRequest(name=name), me)
    ).state == R.DOSSIER_STATE_CLOSED
    again = await records.call(
        "ReactivateDossier", R.ReactivateDossierRequest(name=name, request_id=rid()), me
    )
    assert again.state == R.DOSSIER_STATE_ACTIVE
    await expect_error(
        records.call(
            "ReactivateDossier", R.ReactivateDossierRequest(name=name, request_id=rid()), me
        ),
        C.FAILED_PRECONDITION,
        "DOSSIER_NOT_CLOSED",
    )


async def test_idempotent_retry_returns_the_first_result(records: RecordsCalls) -> None:
    ins = make_ins()
    req = create_request(ins)
    first = await records.call("CreateDossier", req, desk())
    events = await records.count("outbox")
    second = await records.call("CreateDossier", req, desk())
    assert second == first
    assert await records.count("outbox") == events
    other = create_request(make_ins(), request_id=req.request_id)
    await expect_error(
        records.call("CreateDossier", other, desk()), C.INVALID_ARGUMENT, "REQUEST_ID_REUSED"
    )
    await expect_error(
        records.call("CreateDossier", create_request(make_ins(), request_id=""), desk()),
        C.INVALID_ARGUMENT,
        "REQUEST_ID_REQUIRED",
    )
    await expect_error(
        records.call("CreateDossier", create_request(make_ins(), request_id="r-1"), desk()),
        C.INVALID_ARGUMENT,
        "REQUEST_ID_INVALID",
    )
    assert await records.count("outbox") == events


async def test_legacy_record_must_accept_terms_first(records: RecordsCalls) -> None:
    ins = make_ins()
    async with records.app.db() as session, session.begin():
        dossier, _ = await lifecycle.create(
            session,
            create_request(ins),
            desk(),
            records.settings,
            datetime.now(UTC),
            legacy=True,
        )
    assert dossier.state == R.DOSSIER_STATE_TERMS_ACCEPTANCE_REQUIRED
    name = dossier.name
    err = await expect_error(
        records.call("GetDossier", R.GetDossierRequest(name=name), patient(ins)),
        C.FAILED_PRECONDITION,
        "TERMS_NOT_ACCEPTED",
    )
    info = error_info(err)
    assert info is not None
    assert info.metadata["current_terms_version"] == records.settings.terms_version
    await expect_error(add_doc(records, name), C.FAILED_PRECONDITION, "TERMS_NOT_ACCEPTED")
    await expect_error(
        records.call(
            "AcceptTermsOfUse",
            R.AcceptTermsOfUseRequest(name=name, terms_version="1999-01", request_id=rid()),
            patient(ins),
        ),
        C.FAILED_PRECONDITION,
        "TERMS_VERSION_NOT_CURRENT",
    )
    accepted = await records.call(
        "AcceptTermsOfUse",
        R.AcceptTermsOfUseRequest(
            name=name, terms_version=records.settings.terms_version, request_id=rid()
        ),
        patient(ins),
    )
    assert accepted.state == R.DOSSIER_STATE_ACTIVE
    await add_doc(records, name)


async def test_no_signed_principal_is_unauthenticated(records: RecordsCalls) -> None:
    name, _ = await new_dossier(records)
    await expect_error(
        records.call("ListDocuments", R.ListDocumentsRequest(parent=name), None),
        C.UNAUTHENTICATED,
        "UNAUTHENTICATED",
    )


async def test_concurrent_twins_act_once(records: RecordsCalls) -> None:
    """Twins of one request: each gets the first answer or ABORTED REQUEST_IN_PROGRESS."""
    name, _ = await new_dossier(records)
    before = (await records.count("documents"), await records.count("outbox"))
    request = R.CreateDocumentRequest(parent=name, document=doc(), request_id=rid())
    outcomes = await asyncio.gather(
        *(records.call("CreateDocument", request, professional()) for _ in range(4)),
        return_exceptions=True,
    )
    answers = [o for o in outcomes if isinstance(o, R.Document)]
    refused = [o for o in outcomes if not isinstance(o, R.Document)]
    assert answers
    assert all(a == answers[0] for a in answers)
    for error in refused:
        assert isinstance(error, grpc.aio.AioRpcError), error
        info = error_info(error)
        assert (error.code(), info and info.reason) == (C.ABORTED, "REQUEST_IN_PROGRESS")
    assert await records.count("documents") == before[0] + 1
    assert await records.count("outbox") == before[1] + 1
    assert await records.call("CreateDocument", request, professional()) == answers[0]
