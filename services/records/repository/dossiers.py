"""SQL of `dossiers` and `representatives` (and a purged record's processed requests)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dmp.records.v1 import records_pb2
from services.records.crypto import WrappedKey
from services.records.models import documents, dossiers, processed_requests, representatives
from services.records.repository.rows import DossierRow, RepresentativeRow, typed

R = records_pb2


async def find(
    session: AsyncSession,
    *,
    dossier_id: str | None = None,
    patient_ins: str | None = None,
    for_update: bool = False,
) -> DossierRow | None:
    """The record with this id, else (no id given) the record of this INS."""
    query = select(dossiers)
    if dossier_id is not None:
        query = query.where(dossiers.c.dossier_id == dossier_id)
    else:
        query = query.where(dossiers.c.patient_ins == patient_ins)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).one_or_none()
    return None if row is None else typed(DossierRow, row)


async def get(session: AsyncSession, pk: int, *, for_update: bool = False) -> DossierRow | None:
    query = select(dossiers).where(dossiers.c.id == pk)
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).one_or_none()
    return None if row is None else typed(DossierRow, row)


async def reload(session: AsyncSession, pk: int) -> DossierRow:
    row = await get(session, pk)
    assert row is not None  # read in the transaction that holds it
    return row


async def representatives_of(session: AsyncSession, pk: int) -> list[RepresentativeRow]:
    rows = await session.execute(
        select(representatives)
        .where(representatives.c.dossier_pk == pk)
        .order_by(representatives.c.id)
    )
    return [typed(RepresentativeRow, row) for row in rows]


async def ins_taken(session: AsyncSession, ins: str) -> bool:
    query = select(dossiers.c.id).where(dossiers.c.patient_ins == ins)
    return (await session.execute(query)).first() is not None


async def insert(
    session: AsyncSession,
    *,
    dossier_id: str,
    patient_ins: str,
    identity: bytes,
    contact: bytes,
    birth_date: str,
    state: int,
    channel: int,
    creator: str,
    terms_version: str,
    terms_accept_time: datetime | None,
    key: WrappedKey,
    now: datetime,
    institution: str = "",
) -> int:
    """A new record at revision 1; returns its primary key."""
    statement = (
        dossiers.insert()
        .returning(dossiers.c.id)
        .values(
            dossier_id=dossier_id,
            patient_ins=patient_ins,
            identity=identity,
            contact=contact,
            birth_date=birth_date,
            state=state,
            creation_channel=channel,
            creator=creator,
            creator_institution=institution,
            accepted_terms_version=terms_version,
            terms_accept_time=terms_accept_time,
            create_time=now,
            update_time=now,
            close_reason=0,
            close_comment="",
            kek_id=key.kek_id,
            wrapped_dek=key.blob,
            revision=1,
            profile_revision=0,
        )
    )
    return int((await session.execute(statement)).scalar_one())


async def insert_representative(
    session: AsyncSession,
    *,
    dossier_pk: int,
    representative_id: str,
    role: int,
    family_name: str,
    given_name: str,
    ins: str,
    contact: bytes,
    access_end_time: datetime,
) -> None:
    await session.execute(
        representatives.insert().values(
            dossier_pk=dossier_pk,
            representative_id=representative_id,
            role=role,
            family_name=family_name,
            given_name=given_name,
            ins=ins,
            contact=contact,
            account_subject="",
            access_end_time=access_end_time,
        )
    )


async def change(session: AsyncSession, pk: int, **values: object) -> None:
    """Update the record's own columns; a new revision (etag)."""
    await session.execute(
        update(dossiers)
        .where(dossiers.c.id == pk)
        .values(**values, revision=dossiers.c.revision + 1)
    )


async def profile_changed(session: AsyncSession, pk: int, now: datetime) -> None:
    """The health profile has a new revision (its own etag, apart from the record's)."""
    await session.execute(
        update(dossiers)
        .where(dossiers.c.id == pk)
        .values(profile_revision=dossiers.c.profile_revision + 1, profile_update_time=now)
    )


# -- operator tasks -----------------------------------------------------------


async def closed_before(session: AsyncSession, cutoff: datetime, limit: int) -> list[int]:
    """Primary keys of records closed at or before `cutoff`, oldest closure first."""
    rows = await session.execute(
        select(dossiers.c.id)
        .where(dossiers.c.state == R.DOSSIER_STATE_CLOSED, dossiers.c.close_time <= cutoff)
        .order_by(dossiers.c.close_time, dossiers.c.id)
        .limit(limit)
    )
    return [int(pk) for pk in rows.scalars()]


async def count_documents(session: AsyncSession, pk: int) -> int:
    query = select(func.count()).where(documents.c.dossier_pk == pk)
    return int((await session.execute(query)).scalar_one())


async def delete_record(session: AsyncSession, pk: int) -> None:
    """The record and everything under it (cascade), with its stored request answers."""
    await session.execute(delete(processed_requests).where(processed_requests.c.dossier_pk == pk))
    await session.execute(delete(dossiers).where(dossiers.c.id == pk))


async def keys_not_wrapped_by(
    session: AsyncSession, kek_id: str, limit: int
) -> list[tuple[int, str, WrappedKey]]:
    """(pk, dossier id, wrapped key) of records whose key another KEK wraps, locked."""
    rows = await session.execute(
        select(dossiers.c.id, dossiers.c.dossier_id, dossiers.c.kek_id, dossiers.c.wrapped_dek)
        .where(dossiers.c.kek_id != kek_id)
        .order_by(dossiers.c.id)
        .limit(limit)
        .with_for_update()
    )
    return [(int(r.id), r.dossier_id, WrappedKey(r.kek_id, r.wrapped_dek)) for r in rows]


async def set_key(session: AsyncSession, pk: int, key: WrappedKey) -> None:
    await session.execute(
        update(dossiers).where(dossiers.c.id == pk).values(kek_id=key.kek_id, wrapped_dek=key.blob)
    )


async def creation_counts(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    creator: str = "",
    institution: str = "",
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Records created by professionals in [start, end): (per creator, per institution),
    most first. Purged records are gone and no longer counted."""
    where = [
        dossiers.c.creation_channel == R.CREATION_CHANNEL_PROFESSIONAL,
        dossiers.c.create_time >= start,
        dossiers.c.create_time < end,
    ]
    if creator:
        where.append(dossiers.c.creator == creator)
    if institution:
        where.append(dossiers.c.creator_institution == institution)
    count = func.count().label("n")
    by_creator = await session.execute(
        select(dossiers.c.creator, count)
        .where(*where)
        .group_by(dossiers.c.creator)
        .order_by(count.desc(), dossiers.c.creator)
    )
    by_institution = await session.execute(
        select(dossiers.c.creator_institution, count)
        .where(*where, dossiers.c.creator_institution != "")
        .group_by(dossiers.c.creator_institution)
        .order_by(count.desc(), dossiers.c.creator_institution)
    )
    return (
        [(str(r[0]), int(r[1])) for r in by_creator],
        [(str(r[0]), int(r[1])) for r in by_institution],
    )
