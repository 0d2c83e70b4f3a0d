"""Subjects identity publishes through its outbox (payloads in dmp/identity/v1/events.proto)."""

from __future__ import annotations

from google.protobuf.message import Message
from sqlalchemy.ext.asyncio import AsyncSession

from kit.outbox import add_event
from services.identity import models

SESSION_REVOKED = "dmp.identity.session.revoked"
ACCOUNT_REGISTERED = "dmp.identity.account.registered"
CREDENTIALS_CHANGED = "dmp.identity.credentials.changed"
PROFESSIONAL_CREATED = "dmp.identity.professional.created"
#: The contact given at sign-up, for notify (the only identity event with contact data).
CONTACT_GIVEN = "dmp.identity.contact.given"


async def publish(session: AsyncSession, subject: str, payload: Message) -> str:
    """Queue `payload` in the caller's transaction (published after commit by the relay)."""
    return await add_event(session, models.outbox, subject, payload)
