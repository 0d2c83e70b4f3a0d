"""identity's own knobs (env `DMP_*`), on top of the shared service settings."""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta

from pydantic import Field, SecretStr, field_validator

from kit.settings import ServiceSettings

# Development only: a deployment sets DMP_OTP_PEPPER from its secret store.
DEV_OTP_PEPPER = base64.b64encode(b"dmp-dev-otp-pepper-not-for-production!!!").decode()


class IdentitySettings(ServiceSettings):
    """Durations are seconds; argon2 defaults are argon2-cffi's (RFC 9106 low-memory profile)."""

    service_name: str = "identity"
    notify_target: str = Field(
        default="127.0.0.1:50054", description="NotifyService address (DMP_NOTIFY_TARGET)."
    )
    notify_timeout_s: float = Field(default=5.0, gt=0, description="Deadline of SendOneTimeCode.")
    token_signing_key_file: str = Field(
        default="var/identity/token_signing_key.pem",
        description="Ed25519 PKCS#8 PEM signing access tokens; its public half is `<file>.pub`.",
    )
    token_signing_key_create: bool = Field(
        default=False, description="Create the key pair if missing (development only)."
    )
    otp_pepper: SecretStr = Field(
        default=SecretStr(DEV_OTP_PEPPER),
        description="Base64 server secret (>= 32 bytes) keying the HMAC of codes.",
    )
    access_token_ttl_s: int = Field(default=600, gt=0, le=3600)
    refresh_token_ttl_s: int = Field(
        default=12 * 3600, gt=0, description="Idle lifetime: each refresh token lives this long."
    )
    session_max_age_s: int = Field(
        default=7 * 24 * 3600, gt=0, description="Absolute lifetime of a session."
    )
    otp_ttl_s: int = Field(default=300, gt=0, le=3600)
    otp_max_attempts: int = Field(default=5, ge=1, le=20)
    throttle_s: int = Field(
        default=900, gt=0, description="How long an account stays throttled after a lockout."
    )
    login_max_failures: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Wrong passwords for one login identifier within login_failure_window_s "
        "before StartLogin answers LOGIN_THROTTLED for it (account or not, password right or "
        "not) for login_throttle_s.",
    )
    login_failure_window_s: int = Field(
        default=900, gt=0, description="Wrong passwords older than this are forgotten."
    )
    login_throttle_s: int = Field(
        default=900, gt=0, description="How long a login identifier stays throttled."
    )
    creation_code_ttl_s: int = Field(default=72 * 3600, gt=0)
    activation_letter_ttl_s: int = Field(
        default=42 * 24 * 3600,
        gt=0,
        le=180 * 24 * 3600,
        description="How long the code of a printed activation letter (creation, or a DMP Info "
        "Service postal reissue) works: long enough for a letter to be handed over or posted.",
    )
    portal_url: str = Field(
        default="https://www.dmp.fr",
        min_length=8,
        max_length=100,
        description="Where the letter sends the patient to activate their access.",
    )
    info_service_phone: str = Field(
        default="3422",
        min_length=2,
        max_length=30,
        description="DMP Info Service's number, printed on the letter.",
    )
    support_reissue_agent_max: int = Field(
        default=20,
        ge=1,
        description="Reissues one DMP Info Service agent may make per "
        "support_reissue_agent_window_s.",
    )
    support_reissue_agent_window_s: int = Field(default=24 * 3600, gt=0)
    support_reissue_patient_max: int = Field(
        default=2,
        ge=1,
        description="Reissues for one patient (by anyone) per support_reissue_patient_window_s.",
    )
    support_reissue_patient_window_s: int = Field(default=7 * 24 * 3600, gt=0)
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost: int = Field(default=65536, ge=8, description="KiB.")
    argon2_parallelism: int = Field(default=4, ge=1)
    argon2_hash_len: int = Field(default=32, ge=16)
    argon2_salt_len: int = Field(default=16, ge=16)

    @field_validator("otp_pepper")
    @classmethod
    def _pepper_is_strong(cls, value: SecretStr) -> SecretStr:
        try:
            raw = base64.b64decode(value.get_secret_value(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("otp_pepper must be base64") from exc
        if len(raw) < 32:
            raise ValueError("otp_pepper must decode to at least 32 bytes")
        return value

    def pepper_bytes(self) -> bytes:
        return base64.b64decode(self.otp_pepper.get_secret_value())

    @property
    def access_token_ttl(self) -> timedelta:
        return timedelta(seconds=self.access_token_ttl_s)

    @property
    def refresh_token_ttl(self) -> timedelta:
        return timedelta(seconds=self.refresh_token_ttl_s)

    @property
    def session_max_age(self) -> timedelta:
        return timedelta(seconds=self.session_max_age_s)

    @property
    def otp_ttl(self) -> timedelta:
        return timedelta(seconds=self.otp_ttl_s)

    @property
    def throttle(self) -> timedelta:
        return timedelta(seconds=self.throttle_s)

    @property
    def login_failure_window(self) -> timedelta:
        return timedelta(seconds=self.login_failure_window_s)

    @property
    def login_throttle(self) -> timedelta:
        return timedelta(seconds=self.login_throttle_s)

    @property
    def creation_code_ttl(self) -> timedelta:
        return timedelta(seconds=self.creation_code_ttl_s)

    @property
    def activation_letter_ttl(self) -> timedelta:
        return timedelta(seconds=self.activation_letter_ttl_s)
