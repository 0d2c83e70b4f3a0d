"""Health profile (merge by item id, provenance on every item) and vaccinations."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import grpc
from google.protobuf import field_mask_pb2
from sqlalchemy import select

from dmp.records.v1 import records_pb2
from services.records.models import profile_items
from tests.fixtures.records import RecordsCalls, admin_staff, patient, professional
from tests.records.helpers import expect_error, new_dossier, rid

R = records_pb2
C = grpc.StatusCode


def _profile_name(name: str) -> str:
    return f"{name}/healthProfile"


async def test_profile_items_keep_author_and_time(records: RecordsCalls) -> None:
    name, ins = await new_dossier(records)
    pro = professional("10000000091")
    update = R.HealthProfile(name=_profile_name(name))
    update.allergies.add(
        substance=R.CodedConcept(display="Pénicilline"), severity=R.ALLERGY_SEVERITY_SEVERE
    )
    update.conditions.add(
        category=R.CONDITION_CATEGORY_MEDICAL_HISTORY,
        code=R.CodedConcept(code="J45", display="Asthme"),
    )
    update.treatments.add(
        medication=R.CodedConcept(code="R03AC02", code_system="ATC"), dosage="2 bouffées"
    )
    update.blood_group.CopyFrom(R.BloodGroup(abo=R.ABO_GROUP_O, rhesus=R.RHESUS_FACTOR_NEGATIVE))
    update.emergency_contacts.add(
        display_name="Paul Durand", relationship="conjoint", phone="+33612345678"
    )
    m = update.measurements.add(observation=R.CodedConcept(code="29463-7"), value=72.5, unit="kg")
    m.measure_time.FromDatetime(datetime.now(UTC) - timedelta(days=2))
    old = update.measurements.add(observation=R.CodedConcept(code="29463-7"), value=80, unit="kg")
    old.measure_time.FromDatetime(datetime.now(UTC) - timedelta(days=800))
    prof = await records.call(
        "UpdateHealthProfile",
        R.UpdateHealthProfileRequest(health_profile=update, request_id=rid()),
        pro,
    )
    assert len(prof.allergies) == 1
    assert prof.blood_group.abo == R.ABO_GROUP_O
    assert len(prof.measurements) == 1  # default window: 365 days
    allergy = prof.allergies[0]
    assert allergy.item_id
    assert allergy.provenance.author.rpps == "10000000091"
    assert allergy.provenance.HasField("create_time")
    # The patient changes one item and adds another: merge, provenance kept.
    me = patient(ins)
    change = R.HealthProfile(name=_profile_name(name))
    changed = change.allergies.add()
    changed.CopyFrom(allergy)
    changed.reaction = "urticaire"
    change.allergies.add(substance=R.CodedConcept(display="Arachide"))
    prof2 = await records.call(
        "UpdateHealthProfile",
        R.UpdateHealthProfileRequest(health_profile=change, etag=prof.etag, request_id=rid()),
        me,
    )
    assert len(prof2.allergies) == 2
    assert len(prof2.conditions) == 1
    first = next(a for a in prof2.allergies if a.item_id == allergy.item_id)
    assert first.reaction == "urticaire"
    assert first.provenance.author.rpps == "10000000091"
    assert first.provenance.last_updated_by.kind == R.AUTHOR_KIND_PATIENT
    # Stale etag, unknown id, invalid item: refused, nothing written.
    for req, code, reason in (
        (
            R.UpdateHealthProfileRequest(health_profile=change, etag=prof.etag, request_id=rid()),
            C.ABORTED,
            "ETAG_MISMATCH",
        ),
        (
            R.UpdateHealthProfileRequest(
                health_profile=R.HealthProfile(name=_profile_name(name)),
                remove_item_ids=["nope"],
                request_id=rid(),
            ),
            C.INVALID_ARGUMENT,
            "UNKNOWN_ITEM_ID",
        ),
    ):
        await expect_error(records.call("UpdateHealthProfile", req, me), code, reason)
    bad = R.HealthProfile(name=_profile_name(name))
    bad.allergies.add(note="no substance")
    await expect_error(
        records.call(
            "UpdateHealthProfile",
            R.UpdateHealthProfileRequest(health_profile=bad, request_id=rid()),
            me,
        ),
        C.INVALID_ARGUMENT,
        "INVALID_ITEM",
    )
    removed = await records.call(
        "UpdateHealthProfile",
        R.UpdateHealthProfileRequest(
            health_profile=R.HealthProfile(name=_profile_name(name)),
            remove_item_ids=[allergy.item_id],
            request_id=rid(),
        ),
        me,
    )
    assert [a.item_id for a in removed.allergies] != [allergy.item_id]
    assert len(removed.allergies) == 1
    got = await records.call(
        "GetHealthProfile",
        R.GetHealthProfileRequest(name=_profile_name(name), measurement_window_days=3650),
        pro,
    )
    assert len(got.measurements) == 2
    await expect_error(
        records.call(
            "GetHealthProfile", R.GetHealthProfileRequest(name=_profile_name(name)), admin_staff()
        ),
        C.PERMISSION_DENIED,
        "SECTION_NOT_READABLE",
    )


async def test_update_mask_limits_the_sections_changed(records: RecordsCalls) -> None:
    """AIP-134: the sections update_mask names are merged; the others are left as they are."""
    name, ins = await new_dossier(records)
    me = patient(ins)
    first = R.HealthProfile(name=_profile_name(name))
    first.allergies.add(substance=R.CodedConcept(display="Pénicilline"))
    first.treatments.add(medication=R.CodedConcept(display="Ventoline"))
    prof = await records.call(
        "UpdateHealthProfile",
        R.UpdateHealthProfileRequest(health_profile=first, request_id=rid()),
        me,
    )
    second = R.HealthProfile(name=_profile_name(name))
    second.allergies.add(substance=R.CodedConcept(display="Arachide"))
    second.treatments.add(medication=R.CodedConcept(display="Ignored"))
    masked = await records.call(
        "UpdateHealthProfile",
        R.UpdateHealthProfileRequest(
            health_profile=second,
            update_mask=field_mask_pb2.FieldMask(paths=["allergies"]),
            request_id=rid(),
        ),
        me,
    )
    assert len(masked.allergies) == 2
    assert [t.medication.display for t in masked.treatments] == ["Ventoline"]
    treatment = prof.treatments[0].item_id
    for mask, removed in ((["allergies"], [treatment]), (["allergy"], []), (["*", "x"], [])):
        await expect_error(
            records.call(
                "UpdateHealthProfile",
                R.UpdateHealthProfileRequest(
                    health_profile=R.HealthProfile(name=_profile_name(name)),
                    update_mask=field_mask_pb2.FieldMask(paths=mask),
                    remove_item_ids=removed,
                    request_id=rid(),
                ),
                me,
            ),
            C.INVALID_ARGUMENT,
            "INVALID_UPDATE_MASK",
        )
    everything = await records.call(
        "UpdateHealthProfile",
        R.UpdateHealthProfileRequest(
            health_profile=R.HealthProfile(name=_profile_name(name)),
            update_mask=field_mask_pb2.FieldMask(paths=["*"]),
            remove_item_ids=[treatment],
            request_id=rid(),
        ),
        me,
    )
    assert list(everything.treatments) == []
    assert len(everything.allergies) == 2


async def test_profile_items_are_encrypted(records: RecordsCalls) -> None:
    name, ins = await new_dossier(records)
    update = R.HealthProfile(name=_profile_name(name))
    update.allergies.add(substance=R.CodedConcept(display="Zyxwallergene"))
    await records.call(
        "UpdateHealthProfile",
        R.UpdateHealthProfileRequest(health_profile=update, request_id=rid()),
        patient(ins),
    )
    async with records.app.db() as session:
        blobs = (await session.execute(select(profile_items.c.sealed))).scalars().all()
    assert blobs
    assert all(b"Zyxwallergene" not in b for b in blobs)


def _d(day: date) -> R.Date:
    return R.Date(year=day.year, month=day.month, day=day.day)


async def test_vaccinations(records: RecordsCalls) -> None:
    name, ins = await new_dossier(records)
    pro = professional("10000000092")
    today = datetime.now(UTC).date()
    vaccine = R.CodedConcept(code="J07BB02", display="Grippe")
    first = await records.call(
        "CreateVaccination",
        R.CreateVaccinationRequest(
            parent=name,
            vaccination=R.Vaccination(
                vaccine=vaccine,
                administration_date=_d(today - timedelta(days=400)),
                lot_number="L1",
                booster_date=_d(today + timedelta(days=30)),
            ),
            request_id=rid(),
        ),
        pro,
    )
    assert first.professional.rpps == "10000000092"
    assert first.provenance.HasField("create_time")
    second = await records.call(
        "CreateVaccination",
        R.CreateVaccinationRequest(
            parent=name,
            vaccination=R.Vaccination(
                vaccine=vaccine, administration_date=_d(today), lot_number="L2"
            ),
            request_id=rid(),
        ),
        patient(ins),
    )
    listed = await records.call(
        "ListVaccinations", R.ListVaccinationsRequest(parent=name, page_size=1), pro
    )
    assert [v.name for v in listed.vaccinations] == [second.name]
    assert listed.next_page_token
    nxt = await records.call(
        "ListVaccinations",
        R.ListVaccinationsRequest(parent=name, page_size=1, page_token=listed.next_page_token),
        pro,
    )
    assert [v.name for v in nxt.vaccinations] == [first.name]
    before = await records.count("vaccinations")
    for vac, code, reason in (
        (R.Vaccination(administration_date=_d(today)), C.INVALID_ARGUMENT, "VACCINE_REQUIRED"),
        (
            R.Vaccination(vaccine=vaccine, administration_date=_d(today + timedelta(days=2))),
            C.INVALID_ARGUMENT,
            "ADMINISTRATION_DATE_IN_FUTURE",
        ),
        (
            R.Vaccination(
                vaccine=vaccine,
                administration_date=_d(today),
                booster_date=_d(today - timedelta(days=1)),
            ),
            C.INVALID_ARGUMENT,
            "BOOSTER_BEFORE_ADMINISTRATION",
        ),
        (  # the professional's own entry again (the patient's L2 is not theirs to know)
            R.Vaccination(
                vaccine=vaccine,
                administration_date=_d(today - timedelta(days=400)),
                lot_number="L1",
            ),
            C.ALREADY_EXISTS,
            "VACCINATION_ALREADY_EXISTS",
        ),
    ):
        await expect_error(
            records.call(
                "CreateVaccination",
                R.CreateVaccinationRequest(parent=name, vaccination=vac, request_id=rid()),
                pro,
            ),
            code,
            reason,
        )
    assert await records.count("vaccinations") == before
