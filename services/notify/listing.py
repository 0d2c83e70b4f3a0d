"""ListNotifications: what was sent to the calling patient, newest first.

Only a patient reading their own list (`patients/{own INS}`); anyone else
gets PERMISSION_DENIED whether or not the list exists (AIP-211). The page
token (kit.pagination) is signed and bound to the parent it was issued for.
"""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.authz.v1 import principal_pb2
from dmp.notify.v1 import notify_pb2
from kit import names, pagination
from kit.directory import DirectoryClient
from kit.errors import permission_denied
from services.notify import models, naming
from services.notify.repository import notifications

_PARENT = re.compile(r"patients/([A-Za-z0-9]{1,64})")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

_STATUS = {
    models.STATUS_PENDING: notify_pb2.DELIVERY_STATUS_PENDING,
    models.STATUS_SENDING: notify_pb2.DELIVERY_STATUS_PENDING,
    models.STATUS_SENT: notify_pb2.DELIVERY_STATUS_SENT,
    models.STATUS_FAILED: notify_pb2.DELIVERY_STATUS_FAILED,
}
_CHANNEL = {
    models.CHANNEL_EMAIL: notify_pb2.CHANNEL_EMAIL,
    models.CHANNEL_SMS: notify_pb2.CHANNEL_SMS,
}


def patient_of(parent: str) -> str:
    return names.parse(_PARENT, parent, "parent must be patients/{patient}.", "parent").group(1)


def authorize(principal: principal_pb2.Principal | None, patient: str) -> None:
    if (
        principal is not None
        and principal.kind == principal_pb2.PRINCIPAL_KIND_PATIENT
        and principal.patient_ins
        and principal.patient_ins == patient
    ):
        return
    raise permission_denied("PERMISSION_DENIED", "The caller may not list these notifications.")


def page_size(requested: int) -> int:
    return pagination.page_size(requested, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


async def list_page(
    sessions: async_sessionmaker[AsyncSession],
    tokens: pagination.PageTokens,
    patient: str,
    size: int,
    token: str,
    *,
    directory: DirectoryClient | None = None,
) -> notify_pb2.ListNotificationsResponse:
    bound = pagination.fingerprint(patient)
    position = tokens.read(token, bound)
    before = None if position is None else position.integer("i")
    async with sessions() as session:
        rows = await notifications.page_for(session, patient, before, size + 1)
    response = notify_pb2.ListNotificationsResponse()
    page = rows[:size]
    # Who each notice names (access, rule change); the directory client asks identity once per
    # professional, from its cache when it can, and never fails the page.
    rpps = {naming.professional_of(r["source_subject"], r["source_payload"])[0] for r in page}
    known = await directory.describe_many(rpps) if directory is not None else {}
    for row in page:
        actor = naming.actor_from(
            *naming.professional_of(row["source_subject"], row["source_payload"]), known
        )
        item = response.notifications.add(
            name=f"patients/{patient}/notifications/{row['notification_id']}",
            kind=notify_pb2.NotificationKind.Value(row["kind"]),
            channel=_CHANNEL[row["channel"]],
            masked_destination=row["masked_destination"],
            status=_STATUS.get(row["status"], notify_pb2.DELIVERY_STATUS_UNSPECIFIED),
            attempts=row["attempts"],
            professional_display_name=actor.display_name,
            professional_profession=actor.profession,
            professional_specialty=actor.specialty,
            establishment_display_name=actor.establishment,
        )
        item.create_time.FromDatetime(row["create_time"])
        if row["send_time"] is not None:
            item.send_time.FromDatetime(row["send_time"])
    if len(rows) > size:
        response.next_page_token = tokens.issue({"i": int(rows[size - 1]["id"])}, bound)
    return response
