"""Card certificates: what a CPS, staff or service certificate says about its holder.

The runtime side of the PKI: the gateway fingerprints every client certificate
(`fingerprint`, what identity stores) and tools read the holder's fields back
(`card_fields`). Issuing certificates is development only (`dmp_dev.pki`).

Card subject fields (documented in the README, "Certificates"):

- CN: display name; OU: card kind (`professional`, `staff`, `service`);
- serialNumber (2.5.4.5): RPPS number (professionals, and staff when they have one);
- custom attributes under the dev arc 1.3.6.1.4.1.59999.1: `.1` profession code
  (TRE_G15), `.2` specialty code (TRE_R38), `.3` roles (comma-separated, e.g.
  `regulateur`), `.4` FINESS number (establishment certificates, OU `establishment`,
  O and CN the establishment's name). Production CPS cards carry the same data in ANS fields; only
  this module (and the dev issuer `dmp_dev.pki`) would change.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID, ObjectIdentifier

OID_PROFESSION = ObjectIdentifier("1.3.6.1.4.1.59999.1.1")
OID_SPECIALTY = ObjectIdentifier("1.3.6.1.4.1.59999.1.2")
OID_ROLES = ObjectIdentifier("1.3.6.1.4.1.59999.1.3")
#: An establishment certificate's FINESS number (dev arc; production: the ANS field).
OID_FINESS = ObjectIdentifier("1.3.6.1.4.1.59999.1.4")

KINDS = ("professional", "staff", "service")


@dataclass(frozen=True)
class CardFields:
    """What a card certificate says about its holder."""

    kind: str
    name: str
    rpps: str = ""
    profession_code: str = ""
    specialty_code: str = ""
    roles: tuple[str, ...] = ()


def x5t_s256(cert: x509.Certificate) -> str:
    """RFC 7515/8705 `x5t#S256`: base64url (no padding) of the DER bytes' SHA-256, as a
    user assertion's `cnf` names the certificate it is bound to."""
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def establishment_finess(cert: x509.Certificate) -> str:
    """The FINESS number an establishment certificate carries ("" when none)."""
    return _attr(cert.subject, OID_FINESS)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER bytes, lowercase hex (what identity stores)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    if not values:
        return ""
    value = values[0].value
    return value if isinstance(value, str) else value.decode()


def card_fields(cert: x509.Certificate) -> CardFields:
    """Read back the documented subject fields of a card certificate."""
    subject = cert.subject
    roles = _attr(subject, OID_ROLES)
    return CardFields(
        kind=_attr(subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        name=_attr(subject, NameOID.COMMON_NAME),
        rpps=_attr(subject, NameOID.SERIAL_NUMBER),
        profession_code=_attr(subject, OID_PROFESSION),
        specialty_code=_attr(subject, OID_SPECIALTY),
        roles=tuple(r for r in roles.split(",") if r),
    )
