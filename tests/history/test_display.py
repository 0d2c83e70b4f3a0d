"""The care history's display fields and vaccination links (services.history_feed.display), on
history_feed's own test server, which has no directory nor records to ask (no
DMP_IDENTITY_TARGET / DMP_RECORDS_TARGET): every id stays an id, a hospital stay still shows
its institution, vaccine lines come without links, and the read never fails for it. With the
directory and records, tests/e2e/test_readable_histories.py and
tests/e2e/test_vaccination_journey.py."""

from __future__ import annotations

import uuid

from dmp.history.v1 import history_pb2
from services.history_feed.synthetic import cip13
from tests.fixtures.history import HistoryClient, batches_of
from tests.history.lines import act, ago, drug, new_ins, pdate, prefix

H = history_pb2


def _stay(line_id: str, ins: str) -> H.ClaimLine:
    line = H.ClaimLine(line_id=line_id, patient_ins=ins)
    line.care_date.CopyFrom(pdate(ago(days=30)))
    line.hospital_stay.ghs_code = "0123"
    line.hospital_stay.admission_date.CopyFrom(line.care_date)
    line.hospital_stay.institution_finess = "750100042"
    line.hospital_stay.institution_name = "CHU Paris Nord"
    line.performer.system = H.ACTOR_ID_SYSTEM_FINESS
    line.performer.id = "750100042"
    return line


def _vaccine(line_id: str, ins: str) -> H.ClaimLine:
    line = H.ClaimLine(line_id=line_id, patient_ins=ins)
    line.care_date.CopyFrom(pdate(ago(days=2)))
    line.vaccine.cip13 = cip13("340093008129")
    line.vaccine.atc_code = "J07BB02"
    line.vaccine.quantity = 1
    return line


async def test_without_directory_ids_stay_ids_and_the_read_succeeds(
    history: HistoryClient,
) -> None:
    ins = new_ins()
    p = prefix()
    unknown = act(p + "act", ins, ago(days=4))
    unknown.performer.system = H.ACTOR_ID_SYSTEM_ADELI
    unknown.performer.id = "751234567"
    # The feeder's own display fields and link are not taken (output only).
    forged = _vaccine(p + "vac", ins)
    forged.vaccination = "dossiers/" + "f" * 32 + "/vaccinations/forged"
    forged.performer_display.display_name = "Dr Forged"
    lines = [drug(p + "drug", ins, ago(days=3)), unknown, _stay(p + "stay", ins), forged]
    sent = await history.ingest(batches_of(lines, 10))
    assert sent.accepted_count == 4
    # The same line without them is the same line (a duplicate, not a LINE_ID_CONFLICT).
    again = await history.ingest(batches_of([_vaccine(p + "vac", ins)], 10))
    assert again.duplicate_count == 1
    dossier = f"dossiers/{uuid.uuid4().hex}"
    await history.backfill(dossier, ins)
    reply = await history.read(dossier)
    shown: dict[str, H.ClaimLine] = {}
    for entry in reply.entries:
        for line in entry.drug_group.lines if entry.HasField("drug_group") else [entry.line]:
            shown[line.line_id.removeprefix(p)] = line
    assert set(shown) == {"drug", "act", "stay", "vac"}
    assert shown["drug"].prescriber_display == H.ActorDisplay(display_name="10100997245")
    assert not shown["drug"].HasField("performer_display")  # no performer, no display
    assert shown["act"].performer_display == H.ActorDisplay(display_name="751234567")
    assert shown["stay"].performer_display == H.ActorDisplay(
        display_name="CHU Paris Nord", establishment_display="CHU Paris Nord"
    )
    assert shown["vac"].vaccination == ""
    assert not shown["vac"].HasField("performer_display")
