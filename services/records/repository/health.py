"""SQL of the health profile (`profile_items`) and of `vaccinations`; both hold sealed items."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.records.models import profile_items, vaccinations
from services.records.repository.rows import ProfileItemRow, VaccinationRow, typed

p = profile_items.c
v = vaccinations.c


async def profile_items_of(session: AsyncSession, dossier_pk: int) -> list[ProfileItemRow]:
    """The record's current (not removed) items, in insertion order."""
    rows = await session.execute(
        select(profile_items).where(p.dossier_pk == dossier_pk, p.removed.is_(False)).order_by(p.id)
    )
    return [typed(ProfileItemRow, row) for row in rows]


async def add_profile_item(
    session: AsyncSession,
    *,
    dossier_pk: int,
    item_id: str,
    section: str,
    sealed: bytes,
    now: datetime,
) -> None:
    await session.execute(
        profile_items.insert().values(
            dossier_pk=dossier_pk,
            item_id=item_id,
            section=section,
            sealed=sealed,
            removed=False,
            create_time=now,
            update_time=now,
        )
    )


async def replace_profile_item(
    session: AsyncSession, pk: int, sealed: bytes, now: datetime
) -> None:
    await session.execute(
        update(profile_items).where(p.id == pk).values(sealed=sealed, update_time=now)
    )


async def remove_profile_item(session: AsyncSession, pk: int, now: datetime) -> None:
    await session.execute(
        update(profile_items).where(p.id == pk).values(removed=True, update_time=now)
    )


async def vaccination_exists(session: AsyncSession, dossier_pk: int, dedup_key: str) -> bool:
    query = select(v.id).where(v.dossier_pk == dossier_pk, v.dedup_key == dedup_key)
    return (await session.execute(query)).first() is not None


async def add_vaccination(
    session: AsyncSession,
    *,
    vaccination_id: str,
    dossier_pk: int,
    administration_date: str,
    dedup_key: str,
    sealed: bytes,
    now: datetime,
) -> None:
    await session.execute(
        vaccinations.insert().values(
            vaccination_id=vaccination_id,
            dossier_pk=dossier_pk,
            administration_date=administration_date,
            dedup_key=dedup_key,
            sealed=sealed,
            create_time=now,
        )
    )


async def vaccinations_page(
    session: AsyncSession, dossier_pk: int, after: tuple[str, int] | None, limit: int
) -> list[VaccinationRow]:
    """Newest administration first; `after`: the keyset position (date, primary key)."""
    conds = [v.dossier_pk == dossier_pk]
    if after is not None:
        day, last = after
        conds.append(
            or_(v.administration_date < day, and_(v.administration_date == day, v.id < last))
        )
    rows = await session.execute(
        select(vaccinations)
        .where(*conds)
        .order_by(v.administration_date.desc(), v.id.desc())
        .limit(limit)
    )
    return [typed(VaccinationRow, row) for row in rows]


async def vaccinations_given_on(
    session: AsyncSession, dossier_pk: int, days: list[str]
) -> list[VaccinationRow]:
    """The record's entries administered on one of `days` (ISO dates), earliest recorded first."""
    if not days:
        return []
    rows = await session.execute(
        select(vaccinations)
        .where(v.dossier_pk == dossier_pk, v.administration_date.in_(days))
        .order_by(v.id)
    )
    return [typed(VaccinationRow, row) for row in rows]


async def vaccinations_before(
    session: AsyncSession, dossier_pk: int, day: str
) -> list[VaccinationRow]:
    """The record's vaccinations administered strictly before `day` (ISO date)."""
    rows = await session.execute(
        select(vaccinations)
        .where(v.dossier_pk == dossier_pk, v.administration_date < day)
        .order_by(v.id)
    )
    return [typed(VaccinationRow, row) for row in rows]
