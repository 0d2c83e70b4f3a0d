"""The launcher's processes read the platform's clock (kit.clock, DMP_DEV_CLOCK_OFFSET_FILE):
time rules move on when a test moves that clock, through the gateway, without waiting.

The session's stack stays ahead afterwards, for every test after this one: the step is
`STEP`, well within what they tolerate (principal signatures live 60 s, access tokens
10 min, and the stack's own tokens and signatures follow its clock).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dmp.authz.v1 import principal_pb2
from dmp.consent.v1 import consent_pb2
from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from tests.e2e.helpers import S, consent, new_record, records, rid, until_refused
from tests.fixtures.records import make_ins
from tests.records.helpers import create_request

OPEN = timedelta(seconds=10)  # the emergency access, in platform time
STEP = timedelta(seconds=11)  # past its end


async def test_an_emergency_access_ends_when_the_platform_clock_passes_it(
    stack: LiveStack,
) -> None:
    dossier, _ = await new_record(stack)
    doctor = consent(stack.card_channel("doctor2"))
    rule = await doctor.StartEmergencyAccess(
        consent_pb2.StartEmergencyAccessRequest(
            parent=dossier,
            mode=principal_pb2.ACCESS_MODE_BRIS_DE_GLACE,
            reason=consent_pb2.EMERGENCY_REASON_PATIENT_UNABLE_TO_CONSENT,
            justification="Patient inconscient aux urgences, antécédents inconnus.",
            requested_duration_seconds=int(OPEN.total_seconds()),
            request_id=rid(),
        ),
        timeout=10,
    )
    assert rule.expire_time.ToDatetime() - rule.create_time.ToDatetime() == OPEN
    reader = records(stack.card_channel("doctor2"))
    listing = records_pb2.ListDocumentsRequest(parent=dossier)
    await reader.ListDocuments(listing, timeout=10)  # the emergency is open

    before = datetime.now(UTC)
    stack.advance_clock(STEP)
    # The processes' clocks moved: what records stamps now is STEP ahead of real time.
    desk = records(stack.card_channel("desk"))
    created = await desk.CreateDossier(create_request(make_ins()), timeout=15)
    assert created.create_time.ToDatetime(UTC) >= before + STEP
    # The gateway's cached decision and consent's rule both ended on the moved clock: the
    # doctor is refused as anyone without a grant is (AIP-211).
    await until_refused(lambda: reader.ListDocuments(listing, timeout=10), S.NOT_FOUND)
