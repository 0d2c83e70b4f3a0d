"""Another gateway replica, in the test process, in front of the session's launcher stack.

Tests that need the gateway configured differently (a small revocation list, a faulty
upstream, low limits for callers without a credential) start one here instead of a whole
platform of their own: same PKI, NATS, keys and services as the `stack` fixture, its own
ports and settings, stopped at the end of the test.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import SecretStr

from dmp_dev import pki
from dmp_dev.testing.stack import LiveStack
from gateway.app import RunningGateway, start_gateway
from gateway.settings import GatewaySettings


def second_gateway(stack: LiveStack, **overrides: Any) -> GatewaySettings:
    """Settings of another gateway replica in front of the stack (its PKI, NATS, keys)."""
    key = base64.b64encode(stack.secrets.principal_key).decode()
    fields: dict[str, Any] = {f"{name}_target": target for name, target in stack.targets.items()}
    fields.update(
        grpc_port=0,
        patient_port=0,
        gateway_http_port=0,
        tls_cert_file=str(stack.pki_dir / pki.SERVER_CERT),
        tls_key_file=str(stack.pki_dir / pki.SERVER_KEY),
        client_ca_file=str(stack.pki_dir / pki.CA_CERT),
        client_crl_file=str(stack.pki_dir / pki.CRL),
        token_public_key_file=str(stack.secrets.token_public_key_file),
        principal_key_id=stack.secrets.principal_key_id,
        principal_keys={stack.secrets.principal_key_id: SecretStr(key)},
        nats_url=stack.nats_url,
        log_json=False,
    )
    fields.update(overrides)
    return GatewaySettings(**fields)


@asynccontextmanager
async def replica(stack: LiveStack, **overrides: Any) -> AsyncIterator[RunningGateway]:
    """A started `second_gateway`, stopped on exit."""
    gateway = await start_gateway(second_gateway(stack, **overrides))
    try:
        yield gateway
    finally:
        await gateway.stop(0)
