"""SendOneTimeCode through gRPC against the real NotifyApp, SMTP and SMS sinks."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import structlog.testing
from google.protobuf import timestamp_pb2
from sqlalchemy import select

from dmp.notify.v1 import notify_pb2, notify_pb2_grpc
from dmp_dev.launcher.mailsink import MailSink
from dmp_dev.testing import principals
from kit.errors import error_info
from kit.server import RunningServer
from services.notify import models
from services.notify.delivery import RetryPolicy
from services.notify.repository import deliveries
from tests.fixtures.notify import NotifySinks, sms_messages
from tests.waits import until

METHOD = "/dmp.notify.v1.NotifyService/SendOneTimeCode"


def internal_md(method: str = METHOD) -> tuple[tuple[str, bytes], ...]:
    return principals.metadata(principals.internal("identity"), method)


def new_email() -> str:
    return f"patient.{uuid.uuid4().hex[:10]}@exemple.fr"


def new_phone() -> str:
    return "+336" + str(uuid.uuid4().int)[:8]


def expires_in(minutes: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(datetime.now(UTC) + timedelta(minutes=minutes))
    return ts


def code_request(**overrides: object) -> notify_pb2.SendOneTimeCodeRequest:
    fields: dict[str, object] = {
        "request_id": str(uuid.uuid4()),
        "channel": notify_pb2.CHANNEL_EMAIL,
        "destination": new_email(),
        "code": "483920",
        "purpose": notify_pb2.CODE_PURPOSE_LOGIN,
        "expire_time": expires_in(5),
    }
    fields.update(overrides)
    return notify_pb2.SendOneTimeCodeRequest(**fields)  # type: ignore[arg-type]


async def delivery_row(server: RunningServer, request_id: str) -> dict[str, object] | None:
    async with server.app.db() as session:
        result = await session.execute(
            select(models.deliveries).where(models.deliveries.c.request_id == request_id)
        )
        row = result.mappings().first()
    return dict(row) if row is not None else None


async def failed_attempts(server: RunningServer, request_id: str) -> bool:
    """The delivery of `request_id` is recorded, still pending, with a failed attempt."""
    row = await delivery_row(server, request_id)
    return (
        row is not None and row["status"] == models.STATUS_PENDING and int(row["attempts"]) >= 1  # type: ignore[call-overload]
    )


async def test_email_code_is_delivered(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub,
    notify_server: RunningServer,
    notify_sinks: NotifySinks,
) -> None:
    request = code_request(code="104857")
    response = await notify_stub.SendOneTimeCode(request, metadata=internal_md())
    mails = notify_sinks.smtp.messages_to(request.destination)
    assert len(mails) == 1
    mail = mails[0]
    assert "104857" in mail.text
    assert "valable 5 minutes" in mail.text
    assert mail.subject == "Votre code de connexion au DMP"
    assert mail.message["To"] == request.destination
    assert notify_sinks.last_code_for(request.destination) == "104857"
    assert response.masked_destination == "p***@e***.fr"
    row = await delivery_row(notify_server, request.request_id)
    assert row is not None
    assert row["delivery_id"] == response.delivery_id
    assert row["status"] == models.STATUS_SENT
    assert row["attempts"] == 1
    assert row["send_time"] is not None
    assert row["masked_destination"] == "p***@e***.fr"
    # Neither the code nor the address is stored anywhere in the row.
    assert all("104857" not in str(v) for v in row.values())
    assert all(request.destination not in str(v) for v in row.values())


async def test_recovery_email_uses_recovery_template(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub, notify_sinks: NotifySinks
) -> None:
    request = code_request(purpose=notify_pb2.CODE_PURPOSE_RECOVERY, code="777001")
    await notify_stub.SendOneTimeCode(request, metadata=internal_md())
    (mail,) = notify_sinks.smtp.messages_to(request.destination)
    assert mail.subject == "Votre code de récupération de compte au DMP"
    assert "777001" in mail.text


async def test_sms_code_is_written_to_the_sink(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub,
    notify_server: RunningServer,
    notify_sinks: NotifySinks,
) -> None:
    phone = new_phone()
    request = code_request(channel=notify_pb2.CHANNEL_SMS, destination=phone, code="000123")
    response = await notify_stub.SendOneTimeCode(request, metadata=internal_md())
    (sms,) = sms_messages(notify_sinks.sms_path, phone)
    assert "000123" in sms["text"]
    assert sms["text"].startswith("DMP : votre code de connexion est 000123.")
    assert len(sms["text"]) <= 160
    assert notify_sinks.last_code_for(phone) == "000123"
    assert response.masked_destination == f"+33******{phone[-2:]}"
    assert notify_sinks.sms_path.stat().st_mode & 0o777 == 0o600
    row = await delivery_row(notify_server, request.request_id)
    assert row is not None
    assert row["channel"] == models.CHANNEL_SMS
    assert row["status"] == models.STATUS_SENT


async def test_same_request_id_sends_once(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub,
    notify_server: RunningServer,
    notify_sinks: NotifySinks,
) -> None:
    request = code_request()
    first = await notify_stub.SendOneTimeCode(request, metadata=internal_md())
    second = await notify_stub.SendOneTimeCode(request, metadata=internal_md())
    assert second.delivery_id == first.delivery_id
    assert second.masked_destination == first.masked_destination
    assert notify_sinks.count_for(request.destination) == 1


async def test_concurrent_calls_with_one_request_id_send_once(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub, notify_sinks: NotifySinks
) -> None:
    request = code_request(channel=notify_pb2.CHANNEL_SMS, destination=new_phone())
    responses = await asyncio.gather(
        *(notify_stub.SendOneTimeCode(request, metadata=internal_md()) for _ in range(5))
    )
    assert len({r.delivery_id for r in responses}) == 1
    assert notify_sinks.count_for(request.destination) == 1


async def test_request_id_reused_for_another_message_is_refused(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub, notify_sinks: NotifySinks
) -> None:
    request = code_request()
    await notify_stub.SendOneTimeCode(request, metadata=internal_md())
    other = code_request(request_id=request.request_id, destination="autre.personne@exemple.org")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notify_stub.SendOneTimeCode(other, metadata=internal_md())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # as kit.idempotency
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == "REQUEST_ID_REUSED"
    assert notify_sinks.count_for(other.destination) == 0


BAD_INPUTS = [
    pytest.param({"channel": notify_pb2.CHANNEL_UNSPECIFIED}, "CHANNEL_UNSPECIFIED", id="channel"),
    pytest.param({"destination": "pas-une-adresse"}, "DESTINATION_INVALID", id="email-shape"),
    pytest.param({"destination": "a@b.fr\r\nBcc: x@y.fr"}, "DESTINATION_INVALID", id="crlf"),
    pytest.param({"destination": ""}, "DESTINATION_INVALID", id="empty-destination"),
    pytest.param(
        {"channel": notify_pb2.CHANNEL_SMS, "destination": "0612345678"},
        "DESTINATION_INVALID",
        id="phone-not-e164",
    ),
    pytest.param(
        {"channel": notify_pb2.CHANNEL_SMS, "destination": "jean@exemple.fr"},
        "DESTINATION_INVALID",
        id="email-on-sms",
    ),
    pytest.param(
        {"channel": notify_pb2.CHANNEL_EMAIL, "destination": "+33612345678"},
        "DESTINATION_INVALID",
        id="phone-on-email",
    ),
    pytest.param({"code": "12345"}, "CODE_MALFORMED", id="code-short"),
    pytest.param({"code": "1234567"}, "CODE_MALFORMED", id="code-long"),
    pytest.param({"code": "12a456"}, "CODE_MALFORMED", id="code-letter"),
    pytest.param({"code": "١٢٣٤٥٦"}, "CODE_MALFORMED", id="code-arabic-digits"),
    pytest.param({"code": ""}, "CODE_MALFORMED", id="code-empty"),
    pytest.param(
        {"purpose": notify_pb2.CODE_PURPOSE_UNSPECIFIED}, "PURPOSE_UNSPECIFIED", id="purpose"
    ),
    pytest.param({"request_id": ""}, "REQUEST_ID_REQUIRED", id="request-id-empty"),
    pytest.param({"request_id": "x" * 65}, "REQUEST_ID_INVALID", id="request-id-long"),
    pytest.param({"request_id": "a b"}, "REQUEST_ID_INVALID", id="request-id-space"),
    pytest.param({"expire_time": expires_in(-1)}, "EXPIRE_TIME_INVALID", id="expired"),
]


@pytest.mark.parametrize(("overrides", "reason"), BAD_INPUTS)
async def test_bad_input_is_refused_and_nothing_written(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub,
    notify_server: RunningServer,
    notify_sinks: NotifySinks,
    overrides: dict[str, object],
    reason: str,
) -> None:
    before = await deliveries.count(notify_server.app.db)
    sms_before = len(sms_messages(notify_sinks.sms_path))
    mails_before = len(notify_sinks.smtp.messages)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notify_stub.SendOneTimeCode(code_request(**overrides), metadata=internal_md())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == reason
    assert info.domain == "notify.dmp"
    assert await deliveries.count(notify_server.app.db) == before
    assert len(sms_messages(notify_sinks.sms_path)) == sms_before
    assert len(notify_sinks.smtp.messages) == mails_before


async def test_request_id_is_one_uuid_however_spelled(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub, notify_sinks: NotifySinks
) -> None:
    """kit.idempotency: the canonical UUID is the key, so its other spellings are retries."""
    request_id = uuid.uuid4()
    request = code_request(request_id=request_id.hex.upper())
    first = await notify_stub.SendOneTimeCode(request, metadata=internal_md())
    request.request_id = str(request_id)
    second = await notify_stub.SendOneTimeCode(request, metadata=internal_md())
    assert second.delivery_id == first.delivery_id
    assert notify_sinks.count_for(request.destination) == 1


@pytest.mark.parametrize(
    "principal",
    [
        pytest.param(principals.patient("1234567890123"), id="patient"),
        pytest.param(principals.professional("10001234567"), id="professional"),
    ],
)
async def test_non_internal_caller_is_denied(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub,
    notify_server: RunningServer,
    principal: object,
) -> None:
    before = await deliveries.count(notify_server.app.db)
    request = code_request()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notify_stub.SendOneTimeCode(
            request,
            metadata=principals.metadata(principal, METHOD),  # type: ignore[arg-type]
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == "INTERNAL_METHOD"
    assert await deliveries.count(notify_server.app.db) == before


async def test_anonymous_caller_is_denied(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await notify_stub.SendOneTimeCode(code_request())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_smtp_down_for_a_while_then_delivered_once(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub,
    notify_server: RunningServer,
    smtp_sink: MailSink,
) -> None:
    request = code_request(code="246810")
    smtp_sink.stop()
    try:
        call = asyncio.ensure_future(notify_stub.SendOneTimeCode(request, metadata=internal_md()))
        await until(lambda: failed_attempts(notify_server, request.request_id), "a failed send")
        assert not call.done()
        await asyncio.to_thread(smtp_sink.start)
        response = await call
    finally:
        smtp_sink.start()
    (mail,) = smtp_sink.messages_to(request.destination)
    assert "246810" in mail.text
    row = await delivery_row(notify_server, request.request_id)
    assert row is not None
    assert row["delivery_id"] == response.delivery_id
    assert row["status"] == models.STATUS_SENT
    assert int(row["attempts"]) > 1  # type: ignore[call-overload]


async def test_smtp_down_for_good_fails_and_is_recorded(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub,
    notify_server: RunningServer,
    smtp_sink: MailSink,
) -> None:
    codes = notify_server.app.codes  # type: ignore[attr-defined]
    policy = codes.policy
    codes.policy = RetryPolicy(attempts=3, backoff_base_s=0.05, backoff_max_s=0.1)
    request = code_request()
    smtp_sink.stop()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await notify_stub.SendOneTimeCode(request, metadata=internal_md())
    finally:
        smtp_sink.start()
        codes.policy = policy
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == "DELIVERY_FAILED"
    row = await delivery_row(notify_server, request.request_id)
    assert row is not None
    assert row["status"] == models.STATUS_FAILED
    assert row["attempts"] == 3
    assert row["last_error"] == "SMTPConnectError"
    assert row["send_time"] is None
    assert smtp_sink.messages_to(request.destination) == []

    # The relay is back: the same request id retries the failed delivery, once.
    retried = await notify_stub.SendOneTimeCode(request, metadata=internal_md())
    assert len(smtp_sink.messages_to(request.destination)) == 1
    row = await delivery_row(notify_server, request.request_id)
    assert row is not None
    assert row["delivery_id"] == retried.delivery_id
    assert row["status"] == models.STATUS_SENT
    assert row["attempts"] == 4


async def test_one_time_codes_are_not_listed_as_notifications(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub,
) -> None:
    method = "/dmp.notify.v1.NotifyService/ListNotifications"
    listed = await notify_stub.ListNotifications(
        notify_pb2.ListNotificationsRequest(parent="patients/1234567890123"),
        metadata=principals.metadata(principals.patient("1234567890123"), method),
    )
    assert not listed.notifications


async def test_retries_stop_before_the_callers_deadline(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub,
    notify_server: RunningServer,
    smtp_sink: MailSink,
) -> None:
    request = code_request()
    smtp_sink.stop()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await notify_stub.SendOneTimeCode(request, metadata=internal_md(), timeout=1.0)
    finally:
        smtp_sink.start()
    # The service answers in time with its own verdict rather than a bare DEADLINE_EXCEEDED.
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    info = error_info(caught.value)
    assert info is not None
    assert info.reason == "DELIVERY_FAILED"
    row = await delivery_row(notify_server, request.request_id)
    assert row is not None
    assert row["status"] == models.STATUS_FAILED


async def test_logs_hold_neither_code_nor_destination(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub,
) -> None:
    email = code_request(code="918273")
    sms = code_request(channel=notify_pb2.CHANNEL_SMS, destination=new_phone(), code="918274")
    bad = code_request(code="91827x")
    with structlog.testing.capture_logs() as logs:
        await notify_stub.SendOneTimeCode(email, metadata=internal_md())
        await notify_stub.SendOneTimeCode(sms, metadata=internal_md())
        await notify_stub.SendOneTimeCode(email, metadata=internal_md())
        with pytest.raises(grpc.aio.AioRpcError):
            await notify_stub.SendOneTimeCode(bad, metadata=internal_md())
    assert any(entry["event"] == "one_time_code_delivery" for entry in logs)
    dumped = repr(logs)
    for secret in ("918273", "918274", "91827x", email.destination, sms.destination):
        assert secret not in dumped


async def test_cancelled_call_leaves_the_delivery_retryable(
    notify_stub: notify_pb2_grpc.NotifyServiceAsyncStub,
    notify_server: RunningServer,
    smtp_sink: MailSink,
) -> None:
    request = code_request(code="135790")
    smtp_sink.stop()
    try:
        call = notify_stub.SendOneTimeCode(request, metadata=internal_md())
        # Cancelled while sending: its row is there and a send has failed already.
        await until(lambda: failed_attempts(notify_server, request.request_id), "a failed send")
        call.cancel()
        row = None
        for _ in range(100):
            row = await delivery_row(notify_server, request.request_id)
            if row is not None and row["status"] != models.STATUS_PENDING:
                break
            await asyncio.sleep(0.05)
        assert row is not None
        assert row["status"] == models.STATUS_FAILED
        assert row["last_error"] == "Cancelled"
    finally:
        smtp_sink.start()
    await notify_stub.SendOneTimeCode(request, metadata=internal_md())
    (mail,) = smtp_sink.messages_to(request.destination)
    assert "135790" in mail.text
