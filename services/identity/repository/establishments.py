"""SQL of the establishments: `establishments`, their `establishment_certificates` and
their staff, `establishment_members`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.models import (
    establishment_certificates,
    establishment_members,
    establishments,
)

certs = establishment_certificates.c
members = establishment_members.c


@dataclass(frozen=True)
class EstablishmentRow:
    finess: str
    display_name: str
    kind: str
    created_at: datetime


async def finess_taken(session: AsyncSession, finess: str) -> bool:
    query = select(func.count()).where(establishments.c.finess == finess)
    return bool((await session.execute(query)).scalar_one())


async def certificates_taken(session: AsyncSession, prints: list[str]) -> bool:
    query = select(func.count()).where(certs.sha256.in_(prints))
    return bool((await session.execute(query)).scalar_one())


async def add(
    session: AsyncSession,
    *,
    finess: str,
    display_name: str,
    kind: str,
    certificates: list[str],
    now: datetime,
) -> None:
    """The establishment and its certificates; a concurrent twin is IntegrityError."""
    await session.execute(
        establishments.insert().values(
            finess=finess, display_name=display_name, kind=kind, created_at=now
        )
    )
    for sha in certificates:
        await session.execute(
            establishment_certificates.insert().values(sha256=sha, finess=finess, created_at=now)
        )


async def get(session: AsyncSession, finess: str) -> EstablishmentRow | None:
    row = (
        await session.execute(select(establishments).where(establishments.c.finess == finess))
    ).one_or_none()
    if row is None:
        return None
    m = row._mapping
    return EstablishmentRow(m["finess"], m["display_name"], m["kind"], m["created_at"])


async def certificates_of(session: AsyncSession, finess: str) -> list[str]:
    query = select(certs.sha256).where(certs.finess == finess).order_by(certs.sha256)
    return [str(sha) for sha in (await session.execute(query)).scalars()]


async def holder_finess(session: AsyncSession, sha256: str) -> str | None:
    """The FINESS of the establishment whose certificate this is, if one's."""
    query = select(certs.finess).where(certs.sha256 == sha256)
    finess: str | None = (await session.execute(query)).scalar_one_or_none()
    return finess


async def add_member(session: AsyncSession, finess: str, rpps: str, now: datetime) -> None:
    """A concurrent twin is IntegrityError."""
    await session.execute(
        establishment_members.insert().values(finess=finess, rpps=rpps, created_at=now)
    )


async def member_since(session: AsyncSession, finess: str, rpps: str) -> datetime | None:
    query = select(members.created_at).where(members.finess == finess, members.rpps == rpps)
    since: datetime | None = (await session.execute(query)).scalar_one_or_none()
    return since
