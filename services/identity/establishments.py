"""Health establishments: FINESS, name, kind, the certificates of their information systems,
and their staff.

An establishment's certificate is registered here like a card (one fingerprint is
registered once, whatever its kind), so the gateway resolves it with ResolveCertificate.
The establishment then acts only for its members: the gateway asks GetEstablishmentMember
for the RPPS each call asserts, and the principal it builds takes the member's
profession, specialty and roles from the directory entry returned here, never from the
assertion (docs/SECURITY.md, "Establishments").
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.identity.v1 import identity_pb2
from kit import finess, names, rpps
from kit.db import transaction
from kit.errors import already_exists, invalid_argument, not_found
from kit.idempotency import Key
from services.identity import directory, validation
from services.identity.repository import directory as directory_repo
from services.identity.repository import establishments as repo
from services.identity.repository.establishments import EstablishmentRow
from services.identity.runtime import Runtime

I = identity_pb2  # noqa: E741 - the generated module, as elsewhere
CREATE = "CreateEstablishment"
ADD_MEMBER = "AddEstablishmentMember"
KINDS: dict[int, str] = {
    I.ESTABLISHMENT_KIND_HOSPITAL: "hospital",
    I.ESTABLISHMENT_KIND_CLINIC: "clinic",
    I.ESTABLISHMENT_KIND_LABORATORY: "laboratory",
}
_KIND_VALUES = {name: value for value, name in KINDS.items()}


def establishment_name(number: str) -> str:
    return f"establishments/{number}"


def member_name(number: str, rpps_number: str) -> str:
    return f"establishments/{number}/members/{rpps_number}"


def finess_from_name(name: str, field: str) -> str:
    validation.required(name, field, 40)
    prefix, _, number = name.partition("/")
    if prefix != "establishments" or "/" in number:
        raise names.invalid_name(f"{field} must look like establishments/{{finess}}.", field)
    return finess.validate(number, field)


def member_from_name(name: str, field: str = "name") -> tuple[str, str]:
    """(FINESS, RPPS) of `establishments/{finess}/members/{rpps}`, else INVALID_*."""
    validation.required(name, field, 60)
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "establishments" or parts[2] != "members":
        raise names.invalid_name(
            f"{field} must look like establishments/{{finess}}/members/{{rpps}}.", field
        )
    return finess.validate(parts[1], field), rpps.validate(parts[3], field)


def validated(e: identity_pb2.Establishment) -> identity_pb2.Establishment:
    """A clean copy of a CreateEstablishment entry, or INVALID_ARGUMENT."""
    field = "establishment"
    number = finess.validate(validation.required(e.finess, f"{field}.finess", 9), f"{field}.finess")
    display = validation.required(e.display_name.strip(), f"{field}.display_name", 100)
    if e.kind not in KINDS:
        raise invalid_argument(
            "ESTABLISHMENT_KIND_INVALID",
            "An establishment is a hospital, a clinic or a laboratory.",
            f"{field}.kind",
        )
    if not e.certificate_sha256:
        raise invalid_argument(
            "FIELD_REQUIRED", "At least one certificate is required.", f"{field}.certificate_sha256"
        )
    if len(e.certificate_sha256) > directory.MAX_CERTIFICATES:
        raise invalid_argument(
            "FIELD_TOO_LONG", "Too many certificates.", f"{field}.certificate_sha256"
        )
    prints = sorted(
        {directory.fingerprint(f, f"{field}.certificate_sha256") for f in e.certificate_sha256}
    )
    return I.Establishment(
        name=establishment_name(number),
        finess=number,
        display_name=display,
        kind=e.kind,
        certificate_sha256=prints,
    )


def message(row: EstablishmentRow, prints: list[str]) -> identity_pb2.Establishment:
    out = I.Establishment(
        name=establishment_name(row.finess),
        finess=row.finess,
        display_name=row.display_name,
        kind=_KIND_VALUES[row.kind],  # type: ignore[arg-type]
        certificate_sha256=prints,
    )
    out.create_time.FromDatetime(row.created_at)
    return out


async def holder(db: AsyncSession, sha256: str) -> identity_pb2.Establishment | None:
    """The establishment this certificate belongs to, if any (ResolveCertificate)."""
    number = await repo.holder_finess(db, sha256)
    if number is None:
        return None
    row = await repo.get(db, number)
    if row is None:  # pragma: no cover - the foreign key forbids it
        return None
    return message(row, await repo.certificates_of(db, number))


async def create(
    db: AsyncSession, entry: identity_pb2.Establishment, now: datetime
) -> identity_pb2.Establishment:
    if await repo.finess_taken(db, entry.finess):
        raise already_exists("ESTABLISHMENT_EXISTS", "This FINESS is already registered.")
    if await directory_repo.certificates_taken(db, list(entry.certificate_sha256)):
        raise already_exists(
            "CERTIFICATE_ALREADY_REGISTERED", "A certificate is already registered."
        )
    try:
        await repo.add(
            db,
            finess=entry.finess,
            display_name=entry.display_name,
            kind=KINDS[entry.kind],
            certificates=list(entry.certificate_sha256),
            now=now,
        )
    except IntegrityError as exc:  # a concurrent twin won
        raise already_exists("ESTABLISHMENT_EXISTS", "This FINESS is already registered.") from exc
    out = I.Establishment()
    out.CopyFrom(entry)
    out.create_time.FromDatetime(now)
    return out


async def add_member(
    db: AsyncSession, number: str, rpps_number: str, now: datetime
) -> identity_pb2.EstablishmentMember:
    row = await repo.get(db, number)
    if row is None:
        raise not_found("ESTABLISHMENT_NOT_FOUND", "No establishment has this FINESS.")
    professional = await directory.get(db, rpps_number)  # PROFESSIONAL_NOT_FOUND
    if await repo.member_since(db, number, rpps_number) is not None:
        raise already_exists("MEMBER_EXISTS", "This professional is already a member.")
    try:
        await repo.add_member(db, number, rpps_number, now)
    except IntegrityError as exc:
        raise already_exists("MEMBER_EXISTS", "This professional is already a member.") from exc
    return _member(row, professional, now)


async def get_member(
    db: AsyncSession, number: str, rpps_number: str
) -> identity_pb2.EstablishmentMember:
    """The member with their directory entry; one NOT_FOUND whatever is missing."""
    row = await repo.get(db, number)
    since = await repo.member_since(db, number, rpps_number) if row is not None else None
    if row is None or since is None:
        raise not_found(
            "MEMBER_NOT_FOUND", "This professional is not on this establishment's staff."
        )
    return _member(row, await directory.get(db, rpps_number), since)


def _member(
    row: EstablishmentRow, professional: identity_pb2.Professional, since: datetime
) -> identity_pb2.EstablishmentMember:
    out = I.EstablishmentMember(
        name=member_name(row.finess, professional.rpps),
        establishment_display_name=row.display_name,
        professional=professional,
    )
    out.create_time.FromDatetime(since)
    return out


async def create_establishment(
    rt: Runtime, key: Key, entry: identity_pb2.Establishment, caller: str
) -> identity_pb2.Establishment:
    """CreateEstablishment, idempotent per (caller, request id)."""
    now = rt.clock.now()
    async with transaction(rt.db) as db:
        replayed = await rt.requests.replay(
            db, key, scope=caller, method=CREATE, response_type=I.Establishment
        )
        if replayed is not None:
            return replayed
        created = await create(db, entry, now)
        await rt.requests.remember(db, key, scope=caller, method=CREATE, response=created, now=now)
    return created


async def add_establishment_member(
    rt: Runtime, key: Key, number: str, rpps_number: str, caller: str
) -> identity_pb2.EstablishmentMember:
    """AddEstablishmentMember, idempotent per (caller, request id)."""
    now = rt.clock.now()
    async with transaction(rt.db) as db:
        replayed = await rt.requests.replay(
            db, key, scope=caller, method=ADD_MEMBER, response_type=I.EstablishmentMember
        )
        if replayed is not None:
            return replayed
        added = await add_member(db, number, rpps_number, now)
        await rt.requests.remember(
            db, key, scope=caller, method=ADD_MEMBER, response=added, now=now
        )
    return added
