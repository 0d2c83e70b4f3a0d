"""SQL of what notify keeps of records' dossiers: whom to tell (`dossier_patients`) and
which documents wait for their release (`held_documents`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.notify.models import dossier_patients, held_documents


async def get(session: AsyncSession, dossier: str) -> RowMapping | None:
    query = select(dossier_patients).where(dossier_patients.c.dossier == dossier)
    return (await session.execute(query)).mappings().first()


async def add(
    session: AsyncSession,
    dossier: str,
    *,
    patient_ins: str,
    minor: bool,
    representatives: str,
    now: datetime,
) -> None:
    await session.execute(
        dossier_patients.insert().values(
            dossier=dossier,
            patient_ins=patient_ins,
            minor=minor,
            representatives=representatives,
            update_time=now,
        )
    )


async def change(session: AsyncSession, dossier: str, **values: object) -> None:
    await session.execute(
        update(dossier_patients).where(dossier_patients.c.dossier == dossier).values(**values)
    )


async def held(session: AsyncSession, document: str) -> RowMapping | None:
    query = select(held_documents).where(held_documents.c.document == document)
    return (await session.execute(query)).mappings().first()


async def hold(
    session: AsyncSession,
    document: str,
    *,
    dossier: str,
    added_event_id: str | None,
    released: bool,
    now: datetime,
) -> None:
    await session.execute(
        held_documents.insert().values(
            document=document,
            dossier=dossier,
            added_event_id=added_event_id,
            released=released,
            update_time=now,
        )
    )


async def change_held(session: AsyncSession, document: str, **values: object) -> None:
    await session.execute(
        update(held_documents).where(held_documents.c.document == document).values(**values)
    )
