"""The professional directory: RPPS, profession, specialty, roles, certificates; and the
staff and service cards.

Roles are a fixed set (ProfessionalRole); they are stored by their principal
name ("guichet_amo"…) so they read the same as in certificates and principals.
Every client certificate the gateway accepts is listed here, by fingerprint:
a professional's (CPS) under its RPPS entry, a staff or service card in
`cards`, so what a card may do never comes from its own subject fields.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from cryptography import x509
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.identity.v1 import events_pb2, identity_pb2
from kit import codes, filtering, names, pagination, rpps
from kit.db import transaction
from kit.errors import already_exists, invalid_argument, not_found
from kit.idempotency import Key
from services.identity import published, validation
from services.identity.repository import directory as repo
from services.identity.repository.directory import CardRow, ProfessionalRow
from services.identity.runtime import Runtime

ROLE_NAMES: dict[int, str] = {
    value: name.removeprefix("PROFESSIONAL_ROLE_").lower()
    for name, value in identity_pb2.ProfessionalRole.items()
    if value != identity_pb2.PROFESSIONAL_ROLE_UNSPECIFIED
}
ROLE_VALUES = {name: value for value, name in ROLE_NAMES.items()}
MAX_CERTIFICATES = 20
MAX_CERTIFICATE_BYTES = 16 * 1024
DEFAULT_PAGE_SIZE = 50
#: ListProfessionals' AIP-160 filter: one profession at most.
LIST_FILTER = {"profession_code": filtering.Field("string")}
MAX_PAGE_SIZE = 200
CREATE = "CreateProfessional"
REGISTER_CARD = "RegisterCard"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def professional_name(rpps_number: str) -> str:
    return f"professionals/{rpps_number}"


def rpps_from_name(name: str, field: str = "name") -> str:
    validation.required(name, field, 30)
    prefix, _, number = name.partition("/")
    if prefix != "professionals":
        raise names.invalid_name(f"{field} must look like professionals/{{rpps}}.", field)
    return rpps.validate_issued(number, field)


def fingerprint(value: str, field: str) -> str:
    """64 lowercase hex digits (colons and case ignored), else FINGERPRINT_MALFORMED."""
    validation.bounded(value, field, 95)
    normalized = value.replace(":", "").lower()
    if not _HEX64.fullmatch(normalized):
        raise invalid_argument("FINGERPRINT_MALFORMED", "A fingerprint is a SHA-256 in hex.", field)
    return normalized


def certificate_fingerprint(der: bytes, field: str = "certificate_der") -> str:
    if len(der) > MAX_CERTIFICATE_BYTES:
        raise invalid_argument("FIELD_TOO_LONG", "The certificate is too large.", field)
    try:
        x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise invalid_argument(
            "CERTIFICATE_MALFORMED", "The certificate is not valid DER.", field
        ) from exc
    return hashlib.sha256(der).hexdigest()


def validated(p: identity_pb2.Professional) -> identity_pb2.Professional:
    """A clean copy of a CreateProfessional entry, or INVALID_ARGUMENT."""
    field = "professional"
    number = rpps.validate_issued(validation.required(p.rpps, f"{field}.rpps", 11), f"{field}.rpps")
    family = validation.required(p.family_name.strip(), f"{field}.family_name", 100)
    given = validation.required(p.given_name.strip(), f"{field}.given_name", 100)
    profession = validation.required(p.profession_code, f"{field}.profession_code", 8)
    if not codes.is_valid("professions", profession):
        raise invalid_argument(
            "PROFESSION_UNKNOWN", "Unknown profession code.", f"{field}.profession_code"
        )
    specialty = validation.bounded(p.specialty_code, f"{field}.specialty_code", 16)
    if specialty and not codes.is_valid("specialties", specialty):
        raise invalid_argument(
            "SPECIALTY_UNKNOWN", "Unknown specialty code.", f"{field}.specialty_code"
        )
    roles = sorted(
        {
            validation.enum_value(r, identity_pb2.ProfessionalRole.DESCRIPTOR, f"{field}.roles")
            for r in p.roles
        }
    )
    if len(p.certificate_sha256) > MAX_CERTIFICATES:
        raise invalid_argument(
            "FIELD_TOO_LONG", "Too many certificates.", f"{field}.certificate_sha256"
        )
    prints = sorted({fingerprint(f, f"{field}.certificate_sha256") for f in p.certificate_sha256})
    return identity_pb2.Professional(
        name=professional_name(number),
        rpps=number,
        family_name=family,
        given_name=given,
        profession_code=profession,
        specialty_code=specialty,
        roles=roles,  # type: ignore[arg-type]
        certificate_sha256=prints,
    )


async def create(
    db: AsyncSession, entry: identity_pb2.Professional, now: datetime
) -> identity_pb2.Professional:
    if await repo.rpps_taken(db, entry.rpps):
        raise already_exists("PROFESSIONAL_EXISTS", "This RPPS is already in the directory.")
    if entry.certificate_sha256 and await repo.certificates_taken(
        db, list(entry.certificate_sha256)
    ):
        raise already_exists(
            "CERTIFICATE_ALREADY_REGISTERED", "A certificate belongs to another professional."
        )
    try:
        await repo.add_professional(
            db,
            rpps=entry.rpps,
            family_name=entry.family_name,
            given_name=entry.given_name,
            profession_code=entry.profession_code,
            specialty_code=entry.specialty_code or None,
            roles=",".join(ROLE_NAMES[r] for r in entry.roles),
            certificates=list(entry.certificate_sha256),
            now=now,
        )
    except IntegrityError as exc:  # a concurrent twin won
        raise already_exists(
            "PROFESSIONAL_EXISTS", "This RPPS is already in the directory."
        ) from exc
    await published.publish(
        db,
        published.PROFESSIONAL_CREATED,
        events_pb2.ProfessionalCreated(professional=entry.name),
    )
    out = identity_pb2.Professional()
    out.CopyFrom(entry)
    out.create_time.FromDatetime(now)
    return out


def _message(row: ProfessionalRow, prints: list[str]) -> identity_pb2.Professional:
    p = identity_pb2.Professional(
        name=professional_name(row.rpps),
        rpps=row.rpps,
        family_name=row.family_name,
        given_name=row.given_name,
        profession_code=row.profession_code,
        specialty_code=row.specialty_code or "",
        roles=[ROLE_VALUES[r] for r in row.roles.split(",") if r],  # type: ignore[misc]
        certificate_sha256=prints,
    )
    p.create_time.FromDatetime(row.created_at)
    return p


async def get(db: AsyncSession, number: str) -> identity_pb2.Professional:
    row = await repo.professional(db, number)
    if row is None:
        raise not_found("PROFESSIONAL_NOT_FOUND", "No professional has this RPPS.")
    return _message(row, (await repo.certificates_of(db, [number]))[number])


async def resolve(db: AsyncSession, sha256: str) -> identity_pb2.CertificateHolder:
    """The professional or the staff/service card registered with this fingerprint."""
    number = await repo.holder_rpps(db, sha256)
    if number is not None:
        return identity_pb2.CertificateHolder(
            kind=identity_pb2.CARD_KIND_PROFESSIONAL, professional=await get(db, number)
        )
    row = await repo.card(db, sha256)
    if row is None:
        raise not_found("CERTIFICATE_UNKNOWN", "No professional or card holds this certificate.")
    card = _card_message(row)
    return identity_pb2.CertificateHolder(kind=card.kind, card=card)


# Card kinds as stored, and the kinds RegisterCard accepts (professionals use CreateProfessional).
CARD_KINDS: dict[int, str] = {
    identity_pb2.CARD_KIND_STAFF: "staff",
    identity_pb2.CARD_KIND_SERVICE: "service",
}
_CARD_KIND_VALUES = {name: value for value, name in CARD_KINDS.items()}


def card_name(sha256: str) -> str:
    return f"cards/{sha256}"


def validated_card(c: identity_pb2.Card) -> identity_pb2.Card:
    """A clean copy of a RegisterCard entry, or INVALID_ARGUMENT."""
    field = "card"
    if c.kind not in CARD_KINDS:
        raise invalid_argument(
            "CARD_KIND_INVALID",
            "A registered card is a staff or service card (professionals: CreateProfessional).",
            f"{field}.kind",
        )
    display = validation.required(c.display_name.strip(), f"{field}.display_name", 100)
    organisation = validation.bounded(c.organisation.strip(), f"{field}.organisation", 100)
    roles = sorted(
        {
            validation.enum_value(r, identity_pb2.ProfessionalRole.DESCRIPTOR, f"{field}.roles")
            for r in c.roles
        }
    )
    if not roles:
        # Deny by default: a card without a role would be a principal nobody can reason about.
        raise invalid_argument("ROLE_REQUIRED", "A card needs at least one role.", f"{field}.roles")
    number = ""
    if c.rpps:
        number = rpps.validate_issued(
            validation.bounded(c.rpps, f"{field}.rpps", 11), f"{field}.rpps"
        )
    sha = fingerprint(
        validation.required(c.certificate_sha256, f"{field}.certificate_sha256", 95),
        f"{field}.certificate_sha256",
    )
    return identity_pb2.Card(
        name=card_name(sha),
        kind=c.kind,
        display_name=display,
        organisation=organisation,
        roles=roles,  # type: ignore[arg-type]
        rpps=number,
        certificate_sha256=sha,
    )


async def register_card(
    db: AsyncSession, entry: identity_pb2.Card, now: datetime
) -> identity_pb2.Card:
    sha = entry.certificate_sha256
    if await repo.certificates_taken(db, [sha]):
        raise already_exists(
            "CERTIFICATE_ALREADY_REGISTERED", "This certificate is already registered."
        )
    try:
        await repo.add_card(
            db,
            sha256=sha,
            kind=CARD_KINDS[entry.kind],
            display_name=entry.display_name,
            organisation=entry.organisation or None,
            roles=",".join(ROLE_NAMES[r] for r in entry.roles),
            rpps=entry.rpps or None,
            now=now,
        )
    except IntegrityError as exc:  # a concurrent twin won
        raise already_exists(
            "CERTIFICATE_ALREADY_REGISTERED", "This certificate is already registered."
        ) from exc
    out = identity_pb2.Card()
    out.CopyFrom(entry)
    out.create_time.FromDatetime(now)
    return out


def _card_message(row: CardRow) -> identity_pb2.Card:
    card = identity_pb2.Card(
        name=card_name(row.sha256),
        kind=_CARD_KIND_VALUES[row.kind],  # type: ignore[arg-type]
        display_name=row.display_name,
        organisation=row.organisation or "",
        roles=[ROLE_VALUES[r] for r in row.roles.split(",") if r],  # type: ignore[misc]
        rpps=row.rpps or "",
        certificate_sha256=row.sha256,
    )
    card.create_time.FromDatetime(row.created_at)
    return card


def profession_filter(text: str) -> str:
    """The profession ListProfessionals' `filter` keeps; empty for every profession."""
    wanted = filtering.one_of(filtering.parse(text, LIST_FILTER), "profession_code")
    if len(wanted) > 1:
        raise invalid_argument(
            filtering.REASON, "Invalid filter: one profession_code at most.", "filter"
        )
    profession = str(wanted[0]) if wanted else ""
    if profession and not codes.is_valid("professions", profession):
        raise invalid_argument("PROFESSION_UNKNOWN", "Unknown profession code.", "filter")
    return profession


async def list_page(
    db: AsyncSession, *, profession: str, after: str, page_size: int
) -> tuple[list[identity_pb2.Professional], str]:
    """One page after the RPPS `after`, and the last RPPS served when more follow (else "")."""
    rows = await repo.professionals_page(
        db, profession=profession, after=after, limit=page_size + 1
    )
    more = len(rows) > page_size
    rows = rows[:page_size]
    prints = await repo.certificates_of(db, [r.rpps for r in rows])
    page = [_message(r, prints[r.rpps]) for r in rows]
    return page, (rows[-1].rpps if more and rows else "")


async def list_professionals(
    rt: Runtime, request: identity_pb2.ListProfessionalsRequest, tokens: pagination.PageTokens
) -> identity_pb2.ListProfessionalsResponse:
    """ListProfessionals: by RPPS, one profession at most; a token is bound to its filter."""
    size = pagination.page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    profession = profession_filter(request.filter)
    bound = pagination.fingerprint(profession)
    position = tokens.read(request.page_token, bound)
    after = "" if position is None else position.text("a")
    async with transaction(rt.db) as db:
        page, last = await list_page(db, profession=profession, after=after, page_size=size)
    next_token = tokens.issue({"a": last}, bound) if last else ""
    return identity_pb2.ListProfessionalsResponse(professionals=page, next_page_token=next_token)


async def create_professional(
    rt: Runtime, key: Key, entry: identity_pb2.Professional, caller: str
) -> identity_pb2.Professional:
    """CreateProfessional, idempotent per (caller, request id)."""
    now = rt.clock.now()
    async with transaction(rt.db) as db:
        replayed = await rt.requests.replay(
            db, key, scope=caller, method=CREATE, response_type=identity_pb2.Professional
        )
        if replayed is not None:
            return replayed
        created = await create(db, entry, now)
        await rt.requests.remember(db, key, scope=caller, method=CREATE, response=created, now=now)
    return created


async def add_card(
    rt: Runtime, key: Key, entry: identity_pb2.Card, caller: str
) -> identity_pb2.Card:
    """RegisterCard, idempotent per (caller, request id)."""
    now = rt.clock.now()
    async with transaction(rt.db) as db:
        replayed = await rt.requests.replay(
            db, key, scope=caller, method=REGISTER_CARD, response_type=identity_pb2.Card
        )
        if replayed is not None:
            return replayed
        created = await register_card(db, entry, now)
        await rt.requests.remember(
            db, key, scope=caller, method=REGISTER_CARD, response=created, now=now
        )
    return created
