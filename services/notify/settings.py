"""Settings of the notify service (`DMP_*` variables, e.g. `DMP_SMTP_HOST`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from kit.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    """SMTP relay, SMS provider and the retry policy of deliveries."""

    service_name: str = "notify"

    smtp_host: str = Field(default="127.0.0.1", description="SMTP relay host.")
    smtp_port: int = Field(default=1025, ge=1, le=65535, description="SMTP relay port.")
    smtp_username: str = Field(default="", description="SMTP login; empty: no AUTH.")
    smtp_password: SecretStr = Field(default=SecretStr(""), description="SMTP password.")
    smtp_use_tls: bool = Field(default=False, description="Implicit TLS (SMTPS, port 465).")
    smtp_start_tls: bool = Field(default=False, description="Require STARTTLS (port 587).")
    smtp_validate_certs: bool = Field(default=True, description="Check the relay's certificate.")
    smtp_timeout_s: float = Field(
        default=10.0, gt=0, description="Bound of one whole SMTP transaction (connect to 250)."
    )
    mail_from: str = Field(
        default="no-reply@dmp.sante.fr", description="Envelope and From address of e-mails."
    )
    mail_from_name: str = Field(default="DMP", description="Display name of the From header.")

    identity_target: str = Field(
        default="",
        description="identity's address, to name the professional in access notices "
        "(empty: the generic wording).",
    )
    directory_timeout_s: float = Field(
        default=1.0,
        gt=0,
        le=5,
        description="Bound of one directory call made before a notice is sent (the cache "
        "answers most).",
    )

    sms_provider: Literal["file"] = Field(
        default="file", description="SMS adapter; `file` appends JSON lines (development)."
    )
    sms_sink_path: str = Field(
        default="var/sms/outbox.ndjson", description="File of the `file` SMS provider."
    )

    delivery_attempts: int = Field(default=4, ge=1, le=10, description="Attempts per message.")
    delivery_backoff_base_s: float = Field(
        default=0.5, gt=0, description="First retry delay; doubles on each retry (with jitter)."
    )
    delivery_backoff_max_s: float = Field(
        default=4.0, gt=0, description="Largest delay between two attempts."
    )
    events_enabled: bool = Field(
        default=True,
        description="Consume records/consent events and send notifications (needs NATS; "
        "one-time codes work without it).",
    )
    consumer_prefix: str = Field(
        default="notify",
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="Prefix of the durable JetStream consumer names.",
    )
    consumer_max_deliver: int = Field(
        default=12, ge=1, description="Deliveries of an event before it is dead-lettered."
    )
    consumer_ack_wait_s: float = Field(
        default=10.0,
        gt=0,
        description="Unacked events (e.g. of a crashed replica) are redelivered after this; "
        "the intake only writes rows, so it stays short.",
    )
    consumer_backoff_s: list[float] = Field(
        default=[0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0],
        description="Redelivery delays of an event that could not be processed yet "
        "(e.g. its dossier is not known yet).",
    )
    notification_attempts: int = Field(
        default=8, ge=1, le=50, description="Send attempts of a notification before dead-letter."
    )
    notification_backoff_base_s: float = Field(
        default=2.0, gt=0, description="First retry delay of a notification; doubles, with jitter."
    )
    notification_backoff_max_s: float = Field(
        default=600.0, gt=0, description="Largest delay between two attempts of a notification."
    )
    dispatch_concurrency: int = Field(
        default=16, ge=1, le=256, description="Notifications handed to providers in parallel."
    )
    dispatch_poll_s: float = Field(
        default=0.5, gt=0, description="Poll interval for due retries and expired leases."
    )
    sending_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a dispatcher owns a claimed notification; after that (crashed "
        "process) another may send it again. Must exceed smtp_timeout_s.",
    )
    reminder_poll_s: float = Field(
        default=30.0,
        gt=0,
        description="Poll interval of the vaccination reminder schedule (a reminder due at "
        "9:00 goes out within this much).",
    )
    reminder_lead_days: int = Field(
        default=7,
        ge=0,
        le=90,
        description="How many days before a vaccination's booster date the patient is reminded.",
    )
    reminder_hour: int = Field(
        default=9, ge=0, le=23, description="Hour of the day (Paris) a booster reminder is due."
    )
    pending_takeover_s: float = Field(
        default=120.0,
        gt=0,
        description="A delivery still pending after this long is considered abandoned "
        "(crashed process) and may be retried by a new call with the same request id.",
    )
