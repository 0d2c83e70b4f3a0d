"""The platform in-process behind the real gateway, with a real dev PKI.

Identity, consent, records and notify run in-process (session scope) on fresh
databases and the session's nats-server; the gateway listens with TLS on its
card port (mTLS) and its patient port. Every card of `kit.pki.DEMO_CARDS` is
registered with identity (CreateProfessional with its fingerprint) except the
staff and service cards, which the gateway maps from their subject fields.
Patient tokens are signed with identity's own key, as VerifyOneTimeCode would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from dmp.consent.v1 import consent_pb2_grpc
from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp.records.v1 import records_pb2_grpc
from gateway.app import RunningGateway, start_gateway
from gateway.settings import GatewaySettings
from kit import pki
from kit.server import RunningServer, start_app
from kit.testing import principals
from kit.testing.databases import DatabaseFactory
from kit.tokens import AccessTokenIssuer, load_private_key
from services.identity.app import IdentityApp
from tests.fixtures.consent import ConsentHarness
from tests.identity.helpers import identity_settings

MAX_MESSAGE = 1024 * 1024
_ROLES = {
    name.removeprefix("PROFESSIONAL_ROLE_").lower(): value
    for name, value in identity_pb2.ProfessionalRole.items()
}


@dataclass
class Card:
    cert: bytes
    key: bytes
    fields: pki.CardFields
    serial: int = 0


@dataclass
class Platform:
    gateway: RunningGateway
    pki_dir: Path
    ca: pki.Authority
    cards: dict[str, Card]
    token_key_file: Path
    identity: RunningServer
    consent: ConsentHarness
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem

    def card_channel(self, card: Card | str) -> grpc.aio.Channel:
        c = self.cards[card] if isinstance(card, str) else card
        creds = grpc.ssl_channel_credentials(
            self.ca_pem, private_key=c.key, certificate_chain=c.cert
        )
        return self._open(self.gateway.port, creds)

    def patient_channel(self) -> grpc.aio.Channel:
        return self._open(self.gateway.patient_port, grpc.ssl_channel_credentials(self.ca_pem))

    def _open(self, port: int, creds: grpc.ChannelCredentials) -> grpc.aio.Channel:
        channel = grpc.aio.secure_channel(
            f"localhost:{port}",
            creds,
            options=[("grpc.max_send_message_length", 8 * MAX_MESSAGE)],
        )
        self.channels.append(channel)
        return channel

    def token(self, ins: str, account: str = "", **kw: Any) -> str:
        issuer = AccessTokenIssuer(load_private_key(self.token_key_file))
        return issuer.issue(
            account=account or f"acct-{ins}", ins=ins, session_id=uuid.uuid4().hex, **kw
        ).token

    def records(self, channel: grpc.aio.Channel) -> records_pb2_grpc.RecordsServiceStub:
        return records_pb2_grpc.RecordsServiceStub(channel)

    def consent_stub(self, channel: grpc.aio.Channel) -> consent_pb2_grpc.ConsentServiceStub:
        return consent_pb2_grpc.ConsentServiceStub(channel)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _register(identity: RunningServer, fields: pki.CardFields, sha: str) -> None:
    path = "/dmp.identity.v1.IdentityService/CreateProfessional"
    async with grpc.aio.insecure_channel(identity.target) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        family, _, given = fields.name.rpartition(" ")
        await stub.CreateProfessional(
            identity_pb2.CreateProfessionalRequest(
                request_id=str(uuid.uuid4()),
                professional=identity_pb2.Professional(
                    rpps=fields.rpps,
                    family_name=given or fields.name,
                    given_name=family or "-",
                    profession_code=fields.profession_code,
                    specialty_code=fields.specialty_code,
                    roles=[_ROLES[r] for r in fields.roles],
                    certificate_sha256=[sha],
                ),
            ),
            metadata=principals.metadata(principals.internal("pki"), path),
            timeout=10,
        )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform(
    databases: DatabaseFactory,
    nats_url: str,
    notify_server: RunningServer,
    records_server: RunningServer,
    consent: ConsentHarness,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Platform]:
    base = tmp_path_factory.mktemp("gateway")
    pki_dir = base / "pki"
    pki.ensure_dev_pki(pki_dir)
    ca = pki.load_authority(pki_dir)
    cards: dict[str, Card] = {}
    for stem, fields in pki.DEMO_CARDS.items():
        cert = (pki_dir / "cards" / f"{stem}.crt").read_bytes()
        cards[stem] = Card(cert, (pki_dir / "cards" / f"{stem}.key").read_bytes(), fields)
    now = datetime.now(UTC)
    extra = {
        "expired": (
            ca,
            pki.CardFields("professional", "Dr Old Card", "10000000090", "10", "SM53"),
            now - timedelta(days=400),
            now - timedelta(days=1),
        ),
        "revoked": (
            ca,
            pki.CardFields("professional", "Dr Lost Card", "10000000108", "10", "SM53"),
            None,
            None,
        ),
        "other_ca": (
            pki.create_authority("Evil CA"),
            pki.DEMO_CARDS["doctor"],
            None,
            None,
        ),
        "doctor2": (
            ca,
            pki.CardFields("professional", "Dr Anne Morel", "10000000116", "10", "SM53"),
            None,
            None,
        ),
        "unregistered": (
            ca,
            pki.CardFields("professional", "Dr Not Listed", "10000000124", "10", "SM53"),
            None,
            None,
        ),
    }
    for stem, (authority, fields, start, end) in extra.items():
        issued = pki.issue_card(authority, fields, not_before=start, not_after=end)
        cards[stem] = Card(issued.cert_pem, issued.key_pem, fields, issued.serial)
    crl = pki_dir / "ca.crl"
    crl.write_bytes(pki.create_crl(ca, [cards["revoked"].serial]))

    key_dir = base / "keys"
    identity = await start_app(
        IdentityApp(
            identity_settings(
                await databases.create("gw-identity"), nats_url, notify_server.target, key_dir
            )
        )
    )
    for stem, card in cards.items():
        if card.fields.kind == "professional" and stem not in ("other_ca", "unregistered"):
            from cryptography import x509

            sha = pki.fingerprint(x509.load_pem_x509_certificate(card.cert))
            await _register(identity, card.fields, sha)

    settings = GatewaySettings(
        grpc_port=0,
        patient_port=0,
        tls_cert_file=str(pki_dir / "gateway.crt"),
        tls_key_file=str(pki_dir / "gateway.key"),
        client_ca_file=str(pki_dir / "ca.crt"),
        client_crl_file=str(crl),
        token_public_key_file=str(key_dir / "token_signing_key.pem.pub"),
        identity_target=identity.target,
        records_target=records_server.target,
        consent_target=consent.running.target,
        notify_target=notify_server.target,
        history_feed_target="127.0.0.1:1",  # nothing listens: UNAVAILABLE
        nats_url=nats_url,
        max_message_bytes=MAX_MESSAGE,
        rate_limit_per_s=1000,
        rate_limit_burst=1000,
        log_json=False,
        log_level="WARNING",
    )
    gateway = await start_gateway(settings)
    out = Platform(
        gateway, pki_dir, ca, cards, key_dir / "token_signing_key.pem", identity, consent
    )
    yield out
    for channel in out.channels:
        await channel.close()
    await gateway.stop(0)
    await identity.stop(0.5)
