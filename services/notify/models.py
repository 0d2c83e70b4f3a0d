"""Schema of notify: one row per message handed (or to be handed) to a provider.

Deliberately absent: the one-time code, the message text and the full
destination. A leaked table tells which masked address got a code and when,
nothing an attacker could log in with.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from kit.db import BigIntPK, UTCDateTime, service_metadata
from kit.idempotency import processed_requests_table

metadata = service_metadata()

# Stored values of the text columns.
CHANNEL_EMAIL = "email"
CHANNEL_SMS = "sms"
KIND_ONE_TIME_CODE = "one_time_code"
STATUS_PENDING = "pending"
STATUS_SENT = "sent"
STATUS_FAILED = "failed"
#: Claimed by a dispatcher that is (or was, if its lease ran out) handing it to the provider.
STATUS_SENDING = "sending"

# Requests of SendOneTimeCode and SetContactPreferences already answered
# (kit.idempotency): the request hash covers no code and no full destination.
processed_requests = processed_requests_table(metadata)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), nullable=False, unique=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("channel", String(8), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("purpose", String(16), nullable=True),
    Column("masked_destination", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("create_time", UTCDateTime, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
    Column("send_time", UTCDateTime, nullable=True),
    Column("last_error", String(64), nullable=True),
)

# Where the contact data of a row came from, weakest first: given for the patient
# when the record was created (desk, professional, online), by the patient at
# sign-up, by the patient in their preferences. An event never overwrites a
# stronger source; the patient's own preferences are never overwritten by one.
SOURCE_RECORD_CREATION = "records"
SOURCE_SIGN_UP = "identity"
SOURCE_PATIENT = "patient"
SOURCE_RANK = {SOURCE_RECORD_CREATION: 1, SOURCE_SIGN_UP: 2, SOURCE_PATIENT: 3}

# One row per patient: where and for what to notify them. `choices` is JSON
# {"NOTIFICATION_KIND_…": ["CHANNEL_…", …]} (enum names: stable across renumbering).
# Rows come from SetContactPreferences or, by default, from the contact given at
# sign-up (`dmp.identity.contact.given`) or at the record's creation
# (`dmp.records.dossier.created`): notifications are on without any call.
contact_preferences = Table(
    "contact_preferences",
    metadata,
    Column("patient", String(64), primary_key=True),
    Column("email", String(254), nullable=True),
    Column("mobile_phone", String(16), nullable=True),
    Column("choices", Text, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
    #: SOURCE_*: who gave the contact data now stored.
    Column("source", String(16), nullable=False, server_default=SOURCE_PATIENT),
)

# Records' dossiers as notify needs them: whom to tell. Fed by
# `dmp.records.dossier.*` (events name the dossier, not the patient).
# `representatives` is JSON [{"ins": …, "access_end_time": ISO-8601 | null}].
dossier_patients = Table(
    "dossier_patients",
    metadata,
    Column("dossier", String(80), primary_key=True),
    Column("patient_ins", String(64), nullable=False),
    Column("minor", Boolean, nullable=False),
    Column("representatives", Text, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
)

# Documents added while hidden from the patient (announced on release), and
# releases seen before the addition (redelivery can reorder them).
held_documents = Table(
    "held_documents",
    metadata,
    Column("document", String(160), primary_key=True),
    Column("dossier", String(80), nullable=False),
    #: Event id of `document.added` (the announcement's idempotency key); null: released first.
    Column("added_event_id", String(64), nullable=True),
    Column("released", Boolean, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
)

# One row per (event, recipient, channel): the idempotency record of event
# notifications, written (pending) before the consumer acks the event, then
# claimed, sent and marked by the dispatcher. No message text, no full
# destination (read from contact_preferences at send time); `source_payload`
# is the event itself (ids only: the contact data a `dossier.created` carries is
# cleared first, consumed.kept_payload), kept to dead-letter it with its subject.
notifications = Table(
    "notifications",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("notification_id", String(36), nullable=False, unique=True),
    Column("event_id", String(64), nullable=False),
    Column("recipient", String(64), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("kind", String(48), nullable=False),
    #: Template variant (e.g. `closed` of a lifecycle kind, `representative` audience).
    Column("variant", String(32), nullable=False),
    Column("urgent", Boolean, nullable=False),
    Column("occur_time", UTCDateTime, nullable=False),
    Column("source_subject", String(200), nullable=False),
    Column("source_payload", LargeBinary, nullable=False),
    Column("masked_destination", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("dead_count", Integer, nullable=False),
    Column("next_attempt_time", UTCDateTime, nullable=False),
    Column("claim_token", String(36), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("create_time", UTCDateTime, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
    Column("send_time", UTCDateTime, nullable=True),
    Column("last_error", String(64), nullable=True),
    #: JSON W3C headers of the consumer span that queued the row: the send joins its trace.
    Column("trace_context", Text, nullable=True),
    UniqueConstraint(
        "event_id", "recipient", "channel", name="uq_notifications_event_id_recipient_channel"
    ),
    Index("ix_notifications_status_next_attempt_time", "status", "next_attempt_time"),
    Index("ix_notifications_recipient_id", "recipient", "id"),
)

# Booster reminders of vaccinations, fed by `dmp.records.vaccination.recorded`: the
# durable schedule (it lives here, not in NATS: a booster is months or years away,
# beyond any stream retention). `scheduled` rows are turned into notification rows
# once `due_time` passes (then `queued`), by one compare-and-set per row in the
# transaction that queues them; `cancelled` when a later vaccination of the same
# vaccine came first (a row may be cancelled before its own event arrives).
# `source_payload` is the vaccination event (ids and dates only), for dead letters.
REMINDER_SCHEDULED = "scheduled"
REMINDER_QUEUED = "queued"
REMINDER_CANCELLED = "cancelled"

vaccination_reminders = Table(
    "vaccination_reminders",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("vaccination", String(160), nullable=False, unique=True),
    Column("dossier", String(80), nullable=False),
    #: Event id of the vaccination's `recorded` event; the notifications' key derives from it.
    Column("event_id", String(64), nullable=True),
    Column("due_time", UTCDateTime, nullable=False),
    #: The booster date itself (ISO), shown in the message.
    Column("booster_date", String(10), nullable=True),
    Column("status", String(16), nullable=False),
    Column("source_payload", LargeBinary, nullable=True),
    Column("create_time", UTCDateTime, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
    Index("ix_vaccination_reminders_status_due_time", "status", "due_time"),
)
