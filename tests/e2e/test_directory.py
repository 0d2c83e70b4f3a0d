"""The professional directory through the gateway: patients and professionals read it (to
choose whom to grant, to find a colleague); staff cards and unknown entries are refused."""

from __future__ import annotations

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp_dev.testing.stack import LiveStack
from tests.e2e.helpers import S, expect, patient_md, rpps
from tests.fixtures.records import make_ins

ID = identity_pb2


async def test_a_doctor_and_a_patient_look_up_a_pharmacist(stack: LiveStack) -> None:
    name = f"professionals/{rpps('pharmacist')}"
    doctor = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("doctor"))
    found = await doctor.GetProfessional(ID.GetProfessionalRequest(name=name), timeout=10)
    assert found.rpps == rpps("pharmacist")
    assert found.profession_code == "21"

    patient = identity_pb2_grpc.IdentityServiceStub(stack.patient_channel())
    listed = await patient.ListProfessionals(
        ID.ListProfessionalsRequest(filter='profession_code = "21"'),
        metadata=patient_md(stack, make_ins()),
        timeout=10,
    )
    assert rpps("pharmacist") in [p.rpps for p in listed.professionals]


async def test_staff_and_anonymous_callers_are_refused(stack: LiveStack) -> None:
    name = f"professionals/{rpps('doctor')}"
    desk = identity_pb2_grpc.IdentityServiceStub(stack.card_channel("desk"))
    await expect(
        desk.GetProfessional(ID.GetProfessionalRequest(name=name), timeout=10), S.PERMISSION_DENIED
    )
    anonymous = identity_pb2_grpc.IdentityServiceStub(stack.patient_channel())
    await expect(
        anonymous.GetProfessional(ID.GetProfessionalRequest(name=name), timeout=10),
        S.UNAUTHENTICATED,
    )
