"""Register every card of the dev PKI in identity's directory before the gateway serves.

The gateway refuses any client certificate whose fingerprint identity does not
know (`identity.ResolveCertificate`): professional (CPS) cards are recorded
with `CreateProfessional`, staff and service cards with `RegisterCard`.
Without this step no card of `var/pki/cards/` would work. Every start
re-registers: a card already in the directory (ALREADY_EXISTS) is the normal
case of a second `make run`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from dmp_dev import pki
from dmp_dev.launcher.processes import StartupError
from dmp_dev.launcher.secrets import DevSecrets
from kit import principal as principals

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


def card_certificates(cards_dir: Path) -> list[tuple[str, x509.Certificate, pki.CardFields]]:
    """Every card certificate in `cards_dir` (professional, staff, service), by file stem."""
    found = []
    for path in sorted(cards_dir.glob("*.crt")):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        found.append((path.stem, cert, pki.card_fields(cert)))
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


_CARD_KINDS = {"staff": identity_pb2.CARD_KIND_STAFF, "service": identity_pb2.CARD_KIND_SERVICE}


def card_entry(cert: x509.Certificate, fields: pki.CardFields) -> identity_pb2.Card:
    """The directory entry of a staff or service card (tests register cards the same way)."""
    organisation = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return identity_pb2.Card(
        kind=_CARD_KINDS.get(fields.kind, identity_pb2.CARD_KIND_UNSPECIFIED),
        display_name=fields.name,
        organisation=str(organisation[0].value) if organisation else "",
        roles=[_ROLES[r] for r in fields.roles],
        rpps=fields.rpps,
        certificate_sha256=pki.fingerprint(cert),
    )


def registration_request(
    cert: x509.Certificate, fields: pki.CardFields
) -> tuple[str, identity_pb2.CreateProfessionalRequest | identity_pb2.RegisterCardRequest]:
    """The identity method and request that register this card."""
    request_id = str(uuid.uuid4())
    if fields.kind == "professional":
        entry = directory_entry(fields, pki.fingerprint(cert))
        return "CreateProfessional", identity_pb2.CreateProfessionalRequest(
            request_id=request_id, professional=entry
        )
    return "RegisterCard", identity_pb2.RegisterCardRequest(
        request_id=request_id, card=card_entry(cert, fields)
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

    def register(self, cert: x509.Certificate, fields: pki.CardFields) -> None:
        method, request = registration_request(cert, fields)
        call = getattr(self.stub, method)
        call(request, metadata=self._md(method), timeout=self.timeout_s)

    def call(self, method: str, request: object) -> None:
        getattr(self.stub, method)(request, metadata=self._md(method), timeout=self.timeout_s)

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
    """CreateProfessional / RegisterCard for each card; idempotent across restarts.

    A card identity refuses (bad RPPS, unknown role, unknown kind) or whose RPPS
    is already registered with another certificate (the PKI was recreated but
    not the database) becomes a warning: the gateway will refuse that card, the
    rest of the platform is still useful. Anything else (identity unreachable)
    is a StartupError.
    """
    result = Registration()
    with grpc.insecure_channel(identity_target) as channel:
        identity = _Identity(channel, secrets, timeout_s)
        for stem, cert, fields in card_certificates(cards_dir):
            sha = pki.fingerprint(cert)
            unknown = [r for r in fields.roles if r not in _ROLES]
            if unknown:
                result.warnings.append(f"card {stem}: unknown role(s) {', '.join(unknown)}")
                continue
            try:
                identity.register(cert, fields)
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


def _establishment_kind(kind: str) -> int:
    return {
        "hospital": identity_pb2.ESTABLISHMENT_KIND_HOSPITAL,
        "clinic": identity_pb2.ESTABLISHMENT_KIND_CLINIC,
        "laboratory": identity_pb2.ESTABLISHMENT_KIND_LABORATORY,
    }.get(kind, identity_pb2.ESTABLISHMENT_KIND_UNSPECIFIED)


def establishment_requests(
    cert: x509.Certificate, fields: pki.EstablishmentFields
) -> list[tuple[str, object]]:
    """The identity calls that register an establishment, the directory entries of its staff
    who have none yet, and their memberships (in that order)."""
    calls: list[tuple[str, object]] = [
        (
            "CreateEstablishment",
            identity_pb2.CreateEstablishmentRequest(
                request_id=str(uuid.uuid4()),
                establishment=identity_pb2.Establishment(
                    finess=fields.finess,
                    display_name=fields.name,
                    kind=_establishment_kind(fields.kind),  # type: ignore[arg-type]
                    certificate_sha256=[pki.fingerprint(cert)],
                ),
            ),
        )
    ]
    for member in fields.staff:
        if member.family_name:
            calls.append(
                (
                    "CreateProfessional",
                    identity_pb2.CreateProfessionalRequest(
                        request_id=str(uuid.uuid4()),
                        professional=identity_pb2.Professional(
                            rpps=member.rpps,
                            family_name=member.family_name,
                            given_name=member.given_name or "-",
                            profession_code=member.profession_code,
                            specialty_code=member.specialty_code,
                        ),
                    ),
                )
            )
        calls.append(
            (
                "AddEstablishmentMember",
                identity_pb2.AddEstablishmentMemberRequest(
                    request_id=str(uuid.uuid4()),
                    parent=f"establishments/{fields.finess}",
                    professional=f"professionals/{member.rpps}",
                ),
            )
        )
    return calls


def register_establishments(
    directory: Path, identity_target: str, secrets: DevSecrets, timeout_s: float = 10.0
) -> Registration:
    """CreateEstablishment + its staff for each `<stem>.crt` / `<stem>.json` of `directory`;
    idempotent across restarts (ALREADY_EXISTS is the normal case of a second start). A
    refusal becomes a warning (that establishment's calls will be refused); identity
    unreachable is a StartupError."""
    result = Registration()
    if not directory.is_dir():
        return result
    with grpc.insecure_channel(identity_target) as channel:
        identity = _Identity(channel, secrets, timeout_s)
        for path in sorted(directory.glob("*.crt")):
            stem = path.stem
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            fields = pki.load_establishment_fields(path.with_suffix(".json"))
            created = False
            for method, request in establishment_requests(cert, fields):
                try:
                    identity.call(method, request)
                    created = created or method == "CreateEstablishment"
                except grpc.RpcError as exc:
                    code = exc.code()
                    if code == grpc.StatusCode.ALREADY_EXISTS:
                        continue
                    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                        result.warnings.append(
                            f"establishment {stem}: {method} refused: {exc.details()}"
                        )
                        continue
                    raise StartupError(
                        f"registering establishment {stem} failed: {code.name} {exc.details()}"
                    ) from exc
            (result.created if created else result.present).append(f"establishment {stem}")
    return result
