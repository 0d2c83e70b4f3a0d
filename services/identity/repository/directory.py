"""SQL of the directory: `professionals`, their `professional_certificates`, and `cards`.

Rows come back as plain values (names, codes, comma-separated role names); the
domain module `directory` turns them into messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import RowMapping, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.models import (
    cards,
    establishment_certificates,
    professional_certificates,
    professionals,
)

certs = professional_certificates.c


@dataclass(frozen=True)
class ProfessionalRow:
    rpps: str
    family_name: str
    given_name: str
    profession_code: str
    specialty_code: str | None
    roles: str
    created_at: datetime


@dataclass(frozen=True)
class CardRow:
    sha256: str
    kind: str
    display_name: str
    organisation: str | None
    roles: str
    rpps: str | None
    created_at: datetime


async def rpps_taken(session: AsyncSession, rpps: str) -> bool:
    query = select(func.count()).where(professionals.c.rpps == rpps)
    return bool((await session.execute(query)).scalar_one())


async def certificates_taken(session: AsyncSession, prints: list[str]) -> bool:
    """Whether any of these fingerprints is registered: to a professional, a card or an
    establishment."""
    by_professionals = select(func.count()).where(certs.sha256.in_(prints))
    by_cards = select(func.count()).where(cards.c.sha256.in_(prints))
    by_establishments = select(func.count()).where(establishment_certificates.c.sha256.in_(prints))
    return bool(
        (await session.execute(by_professionals)).scalar_one()
        + (await session.execute(by_cards)).scalar_one()
        + (await session.execute(by_establishments)).scalar_one()
    )


async def add_professional(
    session: AsyncSession,
    *,
    rpps: str,
    family_name: str,
    given_name: str,
    profession_code: str,
    specialty_code: str | None,
    roles: str,
    certificates: list[str],
    now: datetime,
) -> None:
    """The entry and its certificates; a concurrent twin is IntegrityError."""
    await session.execute(
        professionals.insert().values(
            rpps=rpps,
            family_name=family_name,
            given_name=given_name,
            profession_code=profession_code,
            specialty_code=specialty_code,
            roles=roles,
            created_at=now,
        )
    )
    for sha in certificates:
        await session.execute(
            professional_certificates.insert().values(sha256=sha, rpps=rpps, created_at=now)
        )


async def professional(session: AsyncSession, rpps: str) -> ProfessionalRow | None:
    row = (
        await session.execute(select(professionals).where(professionals.c.rpps == rpps))
    ).one_or_none()
    return None if row is None else _professional(row._mapping)


async def professionals_page(
    session: AsyncSession, *, profession: str, after: str, limit: int
) -> list[ProfessionalRow]:
    """Up to `limit` entries by RPPS after `after`, of one profession if given."""
    query = select(professionals).order_by(professionals.c.rpps).limit(limit)
    if profession:
        query = query.where(professionals.c.profession_code == profession)
    if after:
        query = query.where(professionals.c.rpps > after)
    return [_professional(row._mapping) for row in await session.execute(query)]


async def certificates_of(session: AsyncSession, numbers: list[str]) -> dict[str, list[str]]:
    """RPPS → its certificate fingerprints, sorted."""
    found: dict[str, list[str]] = {n: [] for n in numbers}
    if not numbers:
        return found
    rows = await session.execute(
        select(certs.rpps, certs.sha256).where(certs.rpps.in_(numbers)).order_by(certs.sha256)
    )
    for row in rows:
        found[row.rpps].append(row.sha256)
    return found


async def holder_rpps(session: AsyncSession, sha256: str) -> str | None:
    """The RPPS whose certificate this is, if a professional's."""
    query = select(certs.rpps).where(certs.sha256 == sha256)
    number: str | None = (await session.execute(query)).scalar_one_or_none()
    return number


async def add_card(
    session: AsyncSession,
    *,
    sha256: str,
    kind: str,
    display_name: str,
    organisation: str | None,
    roles: str,
    rpps: str | None,
    now: datetime,
) -> None:
    """A staff or service card; a concurrent twin is IntegrityError."""
    await session.execute(
        cards.insert().values(
            sha256=sha256,
            kind=kind,
            display_name=display_name,
            organisation=organisation,
            roles=roles,
            rpps=rpps,
            created_at=now,
        )
    )


async def card(session: AsyncSession, sha256: str) -> CardRow | None:
    row = (await session.execute(select(cards).where(cards.c.sha256 == sha256))).one_or_none()
    if row is None:
        return None
    m = row._mapping
    return CardRow(
        sha256=m["sha256"],
        kind=m["kind"],
        display_name=m["display_name"],
        organisation=m["organisation"],
        roles=m["roles"],
        rpps=m["rpps"],
        created_at=m["created_at"],
    )


def _professional(m: RowMapping) -> ProfessionalRow:
    return ProfessionalRow(
        rpps=m["rpps"],
        family_name=m["family_name"],
        given_name=m["given_name"],
        profession_code=m["profession_code"],
        specialty_code=m["specialty_code"],
        roles=m["roles"],
        created_at=m["created_at"],
    )
