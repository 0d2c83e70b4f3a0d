"""Set/GetContactPreferences: own record only, validated contacts and channels."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import grpc
import pytest
from sqlalchemy import func, select

from dmp.authz.v1 import principal_pb2
from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp_dev.testing import principals
from kit.errors import error_info
from kit.server import RunningServer
from services.notify import models

SET = "/dmp.notify.v1.NotifyService/SetContactPreferences"
GET = "/dmp.notify.v1.NotifyService/GetContactPreferences"

if TYPE_CHECKING:
    Stub = notify_pb2_grpc.NotifyServiceAsyncStub


def new_ins() -> str:
    return str(uuid.uuid4().int)[:13]


def name_of(ins: str) -> str:
    return f"patients/{ins}/contactPreferences"


def as_patient(ins: str, method: str) -> tuple[tuple[str, bytes], ...]:
    return principals.metadata(principals.patient(ins), method)


def prefs(ins: str, **fields: object) -> notify_pb2.ContactPreferences:
    values: dict[str, object] = {
        "name": name_of(ins),
        "email": "jean.dupont@exemple.fr",
        "mobile_phone": "+33612345678",
        "choices": [
            notify_pb2.ChannelChoice(
                kind=notify_pb2.NOTIFICATION_KIND_DOCUMENT_ADDED,
                channels=[notify_pb2.CHANNEL_EMAIL],
            ),
            notify_pb2.ChannelChoice(
                kind=notify_pb2.NOTIFICATION_KIND_EMERGENCY_ACCESS,
                channels=[notify_pb2.CHANNEL_EMAIL, notify_pb2.CHANNEL_SMS],
            ),
        ],
    }
    values.update(fields)
    return notify_pb2.ContactPreferences(**values)  # type: ignore[arg-type]


def set_request(message: notify_pb2.ContactPreferences) -> notify_pb2.SetContactPreferencesRequest:
    return notify_pb2.SetContactPreferencesRequest(
        contact_preferences=message, request_id=str(uuid.uuid4())
    )


async def row_count(server: RunningServer) -> int:
    async with server.app.db() as session:
        result = await session.execute(select(func.count()).select_from(models.contact_preferences))
        return int(result.scalar_one())


async def test_patient_sets_then_gets_own_preferences(notify_stub: Stub) -> None:
    ins = new_ins()
    saved = await notify_stub.SetContactPreferences(
        set_request(prefs(ins)), metadata=as_patient(ins, SET)
    )
    assert saved.name == name_of(ins)
    assert saved.email == "jean.dupont@exemple.fr"
    assert saved.mobile_phone == "+33612345678"
    assert saved.HasField("update_time")
    read = await notify_stub.GetContactPreferences(
        notify_pb2.GetContactPreferencesRequest(name=name_of(ins)),
        metadata=as_patient(ins, GET),
    )
    assert read == saved
    kinds = {c.kind: list(c.channels) for c in read.choices}
    assert kinds == {
        notify_pb2.NOTIFICATION_KIND_DOCUMENT_ADDED: [notify_pb2.CHANNEL_EMAIL],
        notify_pb2.NOTIFICATION_KIND_EMERGENCY_ACCESS: [
            notify_pb2.CHANNEL_EMAIL,
            notify_pb2.CHANNEL_SMS,
        ],
    }


async def test_set_replaces_everything(notify_stub: Stub, notify_server: RunningServer) -> None:
    ins = new_ins()
    await notify_stub.SetContactPreferences(set_request(prefs(ins)), metadata=as_patient(ins, SET))
    before = await row_count(notify_server)
    only_email = prefs(
        ins,
        mobile_phone="",
        choices=[
            notify_pb2.ChannelChoice(
                kind=notify_pb2.NOTIFICATION_KIND_EMERGENCY_ACCESS,
                channels=[notify_pb2.CHANNEL_EMAIL],
            )
        ],
    )
    saved = await notify_stub.SetContactPreferences(
        set_request(only_email), metadata=as_patient(ins, SET)
    )
    assert saved.mobile_phone == ""
    assert len(saved.choices) == 1
    assert await row_count(notify_server) == before


async def test_get_before_any_set_returns_empty_preferences(notify_stub: Stub) -> None:
    ins = new_ins()
    read = await notify_stub.GetContactPreferences(
        notify_pb2.GetContactPreferencesRequest(name=name_of(ins)),
        metadata=as_patient(ins, GET),
    )
    assert read == notify_pb2.ContactPreferences(name=name_of(ins))


async def test_internal_caller_may_act_for_a_patient(notify_stub: Stub) -> None:
    ins = new_ins()
    saved = await notify_stub.SetContactPreferences(
        set_request(prefs(ins)), metadata=principals.metadata(principals.internal("identity"), SET)
    )
    assert saved.email == "jean.dupont@exemple.fr"


@pytest.mark.parametrize(
    "principal",
    [
        pytest.param(principals.patient("9999999999999"), id="other-patient"),
        pytest.param(principals.professional("10001234567"), id="professional"),
        pytest.param(principals.staff("agent-1", ("cpam_desk",)), id="staff"),
    ],
)
async def test_others_are_denied_and_nothing_written(
    notify_stub: Stub, notify_server: RunningServer, principal: principal_pb2.Principal
) -> None:
    ins = new_ins()
    before = await row_count(notify_server)
    # Even an invalid payload answers PERMISSION_DENIED: outsiders learn nothing.
    for message in (prefs(ins), prefs(ins, email="invalid")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await notify_stub.SetContactPreferences(
                set_request(message), metadata=principals.metadata(principal, SET)
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notify_stub.GetContactPreferences(
            notify_pb2.GetContactPreferencesRequest(name=name_of(ins)),
            metadata=principals.metadata(principal, GET),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == "PERMISSION_DENIED"
    assert await row_count(notify_server) == before


async def test_patient_cannot_read_someone_elses_existing_preferences(notify_stub: Stub) -> None:
    owner, intruder = new_ins(), new_ins()
    await notify_stub.SetContactPreferences(
        set_request(prefs(owner)), metadata=as_patient(owner, SET)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notify_stub.GetContactPreferences(
            notify_pb2.GetContactPreferencesRequest(name=name_of(owner)),
            metadata=as_patient(intruder, GET),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _choice(kind: int, *channels: int) -> notify_pb2.ChannelChoice:
    return notify_pb2.ChannelChoice(kind=kind, channels=list(channels))  # type: ignore[arg-type]


DOC = notify_pb2.NOTIFICATION_KIND_DOCUMENT_ADDED
EMAIL = notify_pb2.CHANNEL_EMAIL
SMS = notify_pb2.CHANNEL_SMS

BAD = [
    pytest.param({"email": "jean@"}, "EMAIL_INVALID", id="email"),
    pytest.param({"email": "a@b.fr\nBcc: c@d.fr"}, "EMAIL_INVALID", id="email-crlf"),
    pytest.param({"mobile_phone": "0612345678"}, "PHONE_INVALID", id="phone"),
    pytest.param(
        {"email": "", "choices": [_choice(DOC, EMAIL)]}, "CHANNEL_WITHOUT_CONTACT", id="no-email"
    ),
    pytest.param(
        {"mobile_phone": "", "choices": [_choice(DOC, SMS)]},
        "CHANNEL_WITHOUT_CONTACT",
        id="no-phone",
    ),
    pytest.param(
        {"choices": [_choice(notify_pb2.NOTIFICATION_KIND_EMERGENCY_ACCESS)]},
        "EMERGENCY_NOTIFICATION_REQUIRED",
        id="emergency-silenced",
    ),
    pytest.param(
        {"choices": [_choice(notify_pb2.NOTIFICATION_KIND_UNSPECIFIED, EMAIL)]},
        "KIND_INVALID",
        id="kind-unspecified",
    ),
    pytest.param(
        {"choices": [_choice(notify_pb2.NOTIFICATION_KIND_ONE_TIME_CODE, EMAIL)]},
        "KIND_INVALID",
        id="kind-one-time-code",
    ),
    pytest.param({"choices": [_choice(99, EMAIL)]}, "KIND_INVALID", id="kind-unknown"),
    pytest.param(
        {"choices": [_choice(DOC, EMAIL), _choice(DOC, SMS)]},
        "CHOICE_DUPLICATED",
        id="duplicate",
    ),
    pytest.param(
        {"choices": [_choice(DOC, notify_pb2.CHANNEL_UNSPECIFIED)]},
        "CHANNEL_UNSPECIFIED",
        id="channel-unspecified",
    ),
]


@pytest.mark.parametrize(("fields", "reason"), BAD)
async def test_invalid_preferences_are_refused_and_nothing_written(
    notify_stub: Stub, notify_server: RunningServer, fields: dict[str, object], reason: str
) -> None:
    ins = new_ins()
    before = await row_count(notify_server)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notify_stub.SetContactPreferences(
            set_request(prefs(ins, **fields)), metadata=as_patient(ins, SET)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == reason
    assert await row_count(notify_server) == before


@pytest.mark.parametrize("name", ["", "patients/", "patients/123", "users/1/contactPreferences"])
async def test_malformed_name_is_refused(notify_stub: Stub, name: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notify_stub.GetContactPreferences(
            notify_pb2.GetContactPreferencesRequest(name=name),
            metadata=as_patient("1234567890123", GET),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == "INVALID_NAME"


async def test_overlong_request_id_is_refused(notify_stub: Stub) -> None:
    ins = new_ins()
    request = notify_pb2.SetContactPreferencesRequest(
        contact_preferences=prefs(ins), request_id="x" * 65
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notify_stub.SetContactPreferences(request, metadata=as_patient(ins, SET))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == "REQUEST_ID_INVALID"
