"""Small builders shared by the consent tests."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from dmp.authz.v1 import authz_pb2, principal_pb2
from dmp.consent.v1 import consent_pb2
from dmp_dev.testing import principals
from kit.errors import error_info
from tests.fixtures.consent import ConsentHarness, new_rpps

A = authz_pb2
P = principal_pb2
C = consent_pb2


def rid() -> str:
    return str(uuid.uuid4())


def pro(
    profession: str = "10", specialty: str = "", roles: tuple[str, ...] = (), rpps: str = ""
) -> P.Principal:
    return principals.professional(rpps or new_rpps(), profession, specialty, roles)


async def grant(h: ConsentHarness, dossier: str, ins: str, rpps: str) -> C.AccessRule:
    return await h.call(
        "GrantAccess",
        C.GrantAccessRequest(parent=dossier, professional_rpps=rpps, request_id=rid()),
        principals.patient(ins),
    )


async def block(h: ConsentHarness, dossier: str, ins: str, rpps: str) -> C.AccessRule:
    return await h.call(
        "BlockProfessional",
        C.BlockProfessionalRequest(parent=dossier, professional_rpps=rpps, request_id=rid()),
        principals.patient(ins),
    )


async def attending(h: ConsentHarness, dossier: str, ins: str, rpps: str) -> C.AccessRule:
    return await h.call(
        "SetAttendingPhysician",
        C.SetAttendingPhysicianRequest(name=dossier, professional_rpps=rpps, request_id=rid()),
        principals.patient(ins),
    )


async def oppose(
    h: ConsentHarness, dossier: str, ins: str, *, bdg: bool = False, c15: bool = False
) -> C.AccessRule:
    return await h.call(
        "SetEmergencyPreferences",
        C.SetEmergencyPreferencesRequest(
            name=dossier,
            preferences=C.EmergencyPreferences(oppose_bris_de_glace=bdg, oppose_centre_15=c15),
            request_id=rid(),
        ),
        principals.patient(ins),
    )


async def emergency(
    h: ConsentHarness,
    dossier: str,
    principal: P.Principal,
    mode: int = P.ACCESS_MODE_BRIS_DE_GLACE,
    **extra: Any,
) -> C.AccessRule:
    fields: dict[str, Any] = {
        "reason": C.EMERGENCY_REASON_IMMEDIATE_VITAL_RISK,
        "justification": "Patient inconscient aux urgences, antécédents nécessaires.",
    }
    fields.update(extra)
    return await h.call(
        "StartEmergencyAccess",
        C.StartEmergencyAccessRequest(parent=dossier, mode=mode, request_id=rid(), **fields),
        principal,
    )


async def rpc_error(awaitable: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await awaitable
    info = error_info(caught.value)
    return caught.value.code(), info.reason if info else ""
