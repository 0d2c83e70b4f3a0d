"""Settings of the consent service (`DMP_*` variables)."""

from __future__ import annotations

from pydantic import Field

from kit.settings import ServiceSettings


class ConsentSettings(ServiceSettings):
    """Policy file, emergency time box, caches and the records-event consumer."""

    service_name: str = "consent"

    policy_path: str = Field(
        default="", description="Profession matrix YAML; empty: the one shipped with consent."
    )
    emergency_default_s: int = Field(
        default=12 * 3600, gt=0, description="Duration of an emergency access (default 12 h)."
    )
    emergency_max_s: int = Field(
        default=24 * 3600, gt=0, description="Longest emergency access a professional may ask."
    )
    decision_cache_ttl_s: float = Field(
        default=30.0, gt=0, description="How long the gateway may reuse a decision."
    )
    record_cache_size: int = Field(
        default=100_000, gt=0, description="Records whose state and rules stay in memory."
    )
    records_consumer: str = Field(
        default="consent-records", description="Durable consumer name on DMP_RECORDS."
    )
    identity_target: str = Field(
        default="", description="identity's address, to resolve professionals' names."
    )
