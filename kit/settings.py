"""Configuration read from `DMP_*` environment variables.

Every service process reads the same variable names; the launcher (or a
Kubernetes Deployment) sets them per process, so one service's database URL
never leaks into another's.
"""

from __future__ import annotations

import base64
import json
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_PRINCIPAL_KEY = base64.b64encode(b"dmp-dev-principal-key-not-for-production!").decode()


class ServiceSettings(BaseSettings):
    """Settings shared by every service; services subclass it for their own knobs."""

    model_config = SettingsConfigDict(env_prefix="DMP_", extra="ignore")

    service_name: str = Field(default="", description="Logical service name (logs, traces).")
    grpc_host: str = Field(default="127.0.0.1", description="Address the gRPC server binds.")
    grpc_port: int = Field(default=0, ge=0, le=65535, description="gRPC port (0 = any free port).")
    probe_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Plaintext port serving only grpc.health.v1 for Kubernetes probes (0 = off).",
    )
    port_file: str = Field(
        default="", description="If set, the bound gRPC port is written there (launcher use)."
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy async URL (postgresql+asyncpg:// or sqlite+aiosqlite://).",
    )
    database_pool_size: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Connections to PostgreSQL the service keeps open between requests.",
    )
    database_max_overflow: int = Field(
        default=10,
        ge=0,
        le=100,
        description="Connections to PostgreSQL opened beyond the pool under load, closed after.",
    )
    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS JetStream server.")
    nats_stream_replicas: int = Field(
        default=1, ge=1, le=5, description="Replicas of the JetStream streams a service owns."
    )
    principal_key_id: str = Field(default="dev", description="Id of the current principal key.")
    principal_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=lambda: {"dev": SecretStr(DEV_PRINCIPAL_KEY)},
        description='JSON {"key id": "base64 secret"}: all verify, the current one signs.',
    )
    log_level: str = Field(default="INFO", description="Minimum log level.")
    log_json: bool = Field(default=True, description="JSON logs (false: human console output).")
    trace_exporter: str = Field(
        default="none",
        pattern="^(none|console|otlp)$",
        description="Span exporter: none, console (dev) or otlp (implied by DMP_OTLP_ENDPOINT).",
    )
    otlp_endpoint: str = Field(
        default="",
        description="OTLP/gRPC collector, e.g. http://otel-collector:4317 (empty = no OTLP).",
    )
    trace_sample_ratio: float = Field(
        default=1.0, ge=0, le=1, description="Share of new traces sampled (callers' choice wins)."
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Admin HTTP port serving Prometheus /metrics (0 = off).",
    )
    shutdown_grace_s: float = Field(default=5.0, ge=0, description="Grace period on SIGTERM.")
    max_message_bytes: int = Field(
        default=32 * 1024 * 1024, gt=0, description="Largest gRPC message accepted."
    )

    @field_validator("principal_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value)
        return value

    def principal_key_bytes(self) -> dict[str, bytes]:
        """Decoded principal keys; a key shorter than 32 bytes is refused at start-up."""
        keys = {k: base64.b64decode(v.get_secret_value()) for k, v in self.principal_keys.items()}
        for key_id, key in keys.items():
            if len(key) < 32:
                raise ValueError(f"principal key {key_id!r} is shorter than 32 bytes")
        if self.principal_key_id not in keys:
            raise ValueError(f"principal_key_id {self.principal_key_id!r} is not in principal_keys")
        return keys
