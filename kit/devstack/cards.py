"""Register the dev PKI's professional cards in identity's directory before the gateway serves.

The gateway maps a professional card through `identity.ResolveCertificate`,
which only knows fingerprints recorded with `CreateProfessional`; without this
step no card of `var/pki/cards/` would work. Every start re-registers: an
RPPS already in the directory (ALREADY_EXISTS) is the normal case of a second
`make run`. Staff and service cards are mapped by the gateway from their
subject fields and need no registration.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography import x509

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from kit import pki
from kit import principal as principals
from kit.devstack.processes import StartupError
from kit.devstack.secrets import DevSecrets

IDENTITY = "/dmp.identity.v1.IdentityService/"
_ROLES = {
    name.removeprefix("PROFESSIONAL_ROLE_").lower(): value
    for name, value in identity_pb2.ProfessionalRole.items()
    if value != identity_pb2.PROFESSIONAL_ROLE_UNSPECIFIED
}


@dataclass
class Registration:
    """What happened to each card: newly registered, already there, or why it will not work."""

    created: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def professional_cards(cards_dir: Path) -> list[tuple[str, x509.Certificate, pki.CardFields]]:
    """Every professional (CPS) card certificate in `cards_dir`, by file stem."""
    found = []
    for path in sorted(cards_dir.glob("*.crt")):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        fields = pki.card_fields(cert)
        if fields.kind == "professional":
            found.append((path.stem, cert, fields))
    return found


def directory_entry(fields: pki.CardFields, sha: str) -> identity_pb2.Professional:
    """The directory entry a card stands for (tests register cards the same way)."""
    family, _, given = fields.name.rpartition(" ")
    return identity_pb2.Professional(
        rpps=fields.rpps,
        family_name=given or fields.name,
        given_name=family or "-",
        profession_code=fields.profession_code,
        specialty_code=fields.specialty_code,
        roles=[_ROLES[r] for r in fields.roles],
        certificate_sha256=[sha],
    )


class _Identity:
    """identity's stub with a fresh internal principal per call (they are bound to one method)."""

    def __init__(self, channel: grpc.Channel, secrets: DevSecrets, timeout_s: float) -> None:
        self.stub = identity_pb2_grpc.IdentityServiceStub(channel)
        self.secrets = secrets
        self.timeout_s = timeout_s

    def _md(self, method: str) -> tuple[tuple[str, bytes], ...]:
        return principals.metadata_for(
            principals.internal_principal("launcher"),
            IDENTITY + method,
            self.secrets.principal_key_id,
            self.secrets.principal_key,
        )

    def create(self, professional: identity_pb2.Professional) -> None:
        request = identity_pb2.CreateProfessionalRequest(
            request_id=str(uuid.uuid4()), professional=professional
        )
        self.stub.CreateProfessional(
            request, metadata=self._md("CreateProfessional"), timeout=self.timeout_s
        )

    def knows(self, sha: str) -> bool:
        request = identity_pb2.ResolveCertificateRequest(sha256_fingerprint=sha)
        try:
            self.stub.ResolveCertificate(
                request, metadata=self._md("ResolveCertificate"), timeout=self.timeout_s
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True


def register_cards(
    cards_dir: Path, identity_target: str, secrets: DevSecrets, timeout_s: float = 10.0
) -> Registration:
    """CreateProfessional for each professional card; idempotent across restarts.

    A card identity refuses (bad RPPS, unknown role) or whose RPPS is already
    registered with another certificate (the PKI was recreated but not the
    database) becomes a warning: the rest of the platform is still useful.
    Anything else (identity unreachable) is a StartupError.
    """
    result = Registration()
    with grpc.insecure_channel(identity_target) as channel:
        identity = _Identity(channel, secrets, timeout_s)
        for stem, cert, fields in professional_cards(cards_dir):
            sha = pki.fingerprint(cert)
            unknown = [r for r in fields.roles if r not in _ROLES]
            if unknown:
                result.warnings.append(f"card {stem}: unknown role(s) {', '.join(unknown)}")
                continue
            try:
                identity.create(directory_entry(fields, sha))
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.ALREADY_EXISTS:
                    if identity.knows(sha):
                        result.present.append(stem)
                    else:
                        result.warnings.append(
                            f"card {stem}: RPPS {fields.rpps} is registered with another "
                            "certificate (PKI recreated on an old database?); the gateway "
                            "will refuse this card"
                        )
                    continue
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    detail = exc.details()
                    result.warnings.append(f"card {stem}: refused by identity: {detail}")
                    continue
                raise StartupError(
                    f"registering card {stem} with identity failed: {code.name} {exc.details()}"
                ) from exc
            result.created.append(stem)
    return result
