"""Development PKI: a CA standing in for the national CPS authority, and the cards it issues.

Shared by `dmp pki`, the launcher (`make run` creates `./var/pki` on first
start) and the tests; never in the production image, where certificates come
from the real authorities. The card subject fields it writes are the ones
`kit.pki` reads back (documented there and in the README, "Certificates"); the
reading half is re-exported here so dev code needs one import.

Keys are ECDSA P-256: generation is instant and every gRPC stack accepts them.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kit.pki import (
    KINDS,
    OID_FINESS,
    OID_PROFESSION,
    OID_ROLES,
    OID_SPECIALTY,
    CardFields,
    card_fields,
    fingerprint,
)

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CRL",
    "DEMO_CARDS",
    "DEMO_ESTABLISHMENTS",
    "ESTABLISHMENTS_DIR",
    "KINDS",
    "SERVER_CERT",
    "SERVER_KEY",
    "Authority",
    "CardFields",
    "EstablishmentFields",
    "Issued",
    "StaffMember",
    "card_fields",
    "create_authority",
    "create_crl",
    "ensure_dev_establishments",
    "ensure_dev_pki",
    "fingerprint",
    "issue_card",
    "issue_establishment",
    "issue_server",
    "load_authority",
    "load_establishment_fields",
    "save_authority",
    "save_establishment",
    "save_issued",
    "write_private",
]

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CRL = "ca.crl"
SERVER_CERT = "gateway.crt"
SERVER_KEY = "gateway.key"
#: Under the PKI directory: `<stem>.crt`/`.key` of each establishment and `<stem>.json`, what
#: the launcher registers for it (FINESS, name, kind, staff).
ESTABLISHMENTS_DIR = "establishments"


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM, with the DER fingerprint."""

    cert_pem: bytes
    key_pem: bytes
    sha256: str
    serial: int = 0
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Authority:
    """A CA certificate and key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def create_authority(
    common_name: str = "DMP dev CPS authority", *, valid_days: int = 3650
) -> Authority:
    key = _key()
    now = datetime.now(UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "DMP dev"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def _leaf(
    ca: Authority,
    subject: x509.Name,
    *,
    usage: x509.ObjectIdentifier,
    sans: Sequence[x509.GeneralName] = (),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    key = _key()
    now = datetime.now(UTC)
    start = not_before or now - timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or now + timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    return Issued(
        cert.public_bytes(serialization.Encoding.PEM),
        _key_pem(key),
        fingerprint(cert),
        cert.serial_number,
    )


def issue_server(ca: Authority, hosts: Iterable[str] = ("localhost", "127.0.0.1")) -> Issued:
    """The gateway's TLS server certificate (SAN DNS names and IP addresses)."""
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "DMP dev"),
            x509.NameAttribute(NameOID.COMMON_NAME, "dmp-gateway"),
        ]
    )
    return _leaf(ca, subject, usage=ExtendedKeyUsageOID.SERVER_AUTH, sans=sans)


def issue_card(
    ca: Authority,
    fields: CardFields,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    """A client certificate (CPS card, staff card, service certificate)."""
    if fields.kind not in KINDS:
        raise ValueError(f"card kind must be one of {KINDS}")
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "DMP dev"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, fields.kind),
        x509.NameAttribute(NameOID.COMMON_NAME, fields.name),
    ]
    if fields.rpps:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, fields.rpps))
    if fields.profession_code:
        attrs.append(x509.NameAttribute(OID_PROFESSION, fields.profession_code))
    if fields.specialty_code:
        attrs.append(x509.NameAttribute(OID_SPECIALTY, fields.specialty_code))
    if fields.roles:
        attrs.append(x509.NameAttribute(OID_ROLES, ",".join(fields.roles)))
    return _leaf(
        ca,
        x509.Name(attrs),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        not_before=not_before,
        not_after=not_after,
    )


def create_crl(
    ca: Authority, revoked_serials: Iterable[int] = (), *, valid_days: int = 30
) -> bytes:
    """A PEM certificate revocation list signed by `ca`."""
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(now + timedelta(days=valid_days))
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - timedelta(minutes=1))
            .build()
        )
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def save_authority(ca: Authority, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CA_CERT).write_bytes(ca.cert_pem)
    write_private(directory / CA_KEY, _key_pem(ca.key))


def load_authority(directory: Path) -> Authority:
    cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
    key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the dev CA key must be an EC key")
    return Authority(cert, key)


def save_issued(issued: Issued, directory: Path, stem: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(issued.cert_pem)
    write_private(key_path, issued.key_pem)
    return cert_path, key_path


# The demo directory: one card per actor (docs/ARCHITECTURE.md, Actors); RPPS with a Luhn digit.
DEMO_CARDS: dict[str, CardFields] = {
    "doctor": CardFields("professional", "Dr Claire Martin", "10000000017", "10", "SM53"),
    "pharmacist": CardFields("professional", "Paul Durand", "10000000025", "21"),
    "optician": CardFields("professional", "Lea Petit", "10000000033", "28"),
    "regulateur": CardFields(
        "professional", "Dr Samuel Roux", "10000000041", "10", "SM53", ("regulateur",)
    ),
    "occupational": CardFields(
        "professional", "Dr Marc Blanc", "10000000058", "10", "SM53", ("medecin_du_travail",)
    ),
    "admin": CardFields("staff", "Admin CHU", "", "", "", ("administratif",)),
    "desk": CardFields("staff", "Agent CPAM 75", "", "", "", ("guichet_amo",)),
    "support": CardFields("staff", "Agent DMP Info Service", "", "", "", ("info_service",)),
    "amo": CardFields("service", "AMO feeder", "", "", "", ("alimentation_amo",)),
}


def ensure_dev_pki(directory: Path, hosts: Sequence[str] = ("localhost", "127.0.0.1")) -> bool:
    """Create the CA, the gateway certificate, an empty CRL and the demo cards if missing.

    Returns True when something was created. Development only: production
    certificates come from the real authorities.
    """
    if (directory / CA_CERT).exists() and (directory / SERVER_CERT).exists():
        return False
    ca = create_authority()
    save_authority(ca, directory)
    save_issued(issue_server(ca, hosts), directory, "gateway")
    (directory / CRL).write_bytes(create_crl(ca))
    for stem, fields in DEMO_CARDS.items():
        save_issued(issue_card(ca, fields), directory / "cards", stem)
    return True


@dataclass(frozen=True)
class StaffMember:
    """A professional of an establishment's staff. With a family name the launcher also
    creates the directory entry (a professional without a CPS card of their own); with the
    RPPS alone it names someone already in the directory (a demo card's holder)."""

    rpps: str
    family_name: str = ""
    given_name: str = ""
    profession_code: str = ""
    specialty_code: str = ""


@dataclass(frozen=True)
class EstablishmentFields:
    """An establishment's certificate subject and its registration (kind: hospital, clinic,
    laboratory)."""

    finess: str
    name: str
    kind: str = "hospital"
    staff: tuple[StaffMember, ...] = ()


def issue_establishment(ca: Authority, fields: EstablishmentFields) -> Issued:
    """An establishment information system's client certificate (OU `establishment`)."""
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, fields.name),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "establishment"),
        x509.NameAttribute(NameOID.COMMON_NAME, fields.name),
        x509.NameAttribute(OID_FINESS, fields.finess),
    ]
    return _leaf(ca, x509.Name(attrs), usage=ExtendedKeyUsageOID.CLIENT_AUTH)


def save_establishment(
    issued: Issued, fields: EstablishmentFields, directory: Path, stem: str
) -> None:
    """`<stem>.crt`, `<stem>.key` and `<stem>.json` (what the launcher registers)."""
    save_issued(issued, directory, stem)
    (directory / f"{stem}.json").write_text(
        json.dumps(asdict(fields), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )


def load_establishment_fields(path: Path) -> EstablishmentFields:
    """The registration written by `save_establishment` (`<stem>.json`)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    staff = tuple(StaffMember(**member) for member in raw.get("staff", ()))
    return EstablishmentFields(raw["finess"], raw["name"], raw.get("kind", "hospital"), staff)


# The demo establishment: a hospital whose information system deposits discharge letters for
# its doctors (the CI-SIS discharge-letter sample's author and establishment), and where the
# demo doctor also works.
DEMO_ESTABLISHMENTS: dict[str, EstablishmentFields] = {
    "hospital": EstablishmentFields(
        "750803447",
        "Hôpital Européen Georges Pompidou",
        "hospital",
        (
            StaffMember("01234567897", "DAVID", "Charles", "10", "SM27"),
            StaffMember(DEMO_CARDS["doctor"].rpps),
        ),
    ),
}


def ensure_dev_establishments(directory: Path) -> bool:
    """Issue the demo establishments' certificates that are missing (an older `var/pki` has
    none). True when something was created."""
    ca = load_authority(directory)
    target = directory / ESTABLISHMENTS_DIR
    created = False
    for stem, fields in DEMO_ESTABLISHMENTS.items():
        if not (target / f"{stem}.crt").exists():
            save_establishment(issue_establishment(ca, fields), fields, target, stem)
            created = True
    return created
