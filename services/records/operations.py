"""Operator tasks on records (`dmp records purge`, `dmp records rotate-keys`).

Retention purge: a record closed more than `retention_years` ago is deleted with
everything under it, one transaction per record. KEK rotation: every data key
not wrapped by the current KEK is re-wrapped; content is never re-encrypted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dmp.records.v1 import records_pb2
from kit.logs import get_logger
from services.records import crypto, names, search
from services.records.lifecycle import add_years
from services.records.repository import dossiers
from services.records.settings import RecordsSettings

log = get_logger(__name__)
R = records_pb2


@dataclass(frozen=True)
class Purged:
    dossier: str
    close_time: datetime
    documents: int


async def purge_expired(
    sessions: async_sessionmaker[AsyncSession],
    settings: RecordsSettings,
    now: datetime,
    *,
    dry_run: bool = False,
    limit: int = 1000,
) -> list[Purged]:
    """Delete records closed more than `retention_years` ago (rule: 10-year retention).

    One transaction per record, so a failure leaves every record whole.
    """
    cutoff = add_years(now, -settings.retention_years)
    async with sessions() as session:
        candidates = await dossiers.closed_before(session, cutoff, limit)
    out: list[Purged] = []
    for pk in candidates:
        async with sessions() as session, session.begin():
            row = await dossiers.get(session, pk, for_update=True)
            if row is None or row.state != R.DOSSIER_STATE_CLOSED:
                continue
            if row.close_time is None or row.close_time > cutoff:
                continue
            count = await dossiers.count_documents(session, row.id)
            if not dry_run:
                await search.forget_dossier(session, row, settings)
                await dossiers.delete_record(session, row.id)
            out.append(Purged(names.dossier_name(row.dossier_id), row.close_time, count))
            log.info("dossier_purged", dossier=row.dossier_id, documents=count, dry_run=dry_run)
    return out


async def rotate_keys(
    sessions: async_sessionmaker[AsyncSession], settings: RecordsSettings, batch: int = 500
) -> int:
    """Re-wrap every data key not wrapped by the current KEK; returns how many."""
    keks = settings.kek_bytes()
    current = settings.records_kek_id
    done = 0
    while True:
        async with sessions() as session, session.begin():
            rows = await dossiers.keys_not_wrapped_by(session, current, batch)
            if not rows:
                return done
            for pk, dossier_id, wrapped in rows:
                new = crypto.rewrap(wrapped, dossier_id, keks, current)
                await dossiers.set_key(session, pk, new)
            done += len(rows)
