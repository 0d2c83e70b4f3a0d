"""Records that no public RPC creates, written into records' database as an import job would.

A legacy record (migrated from the former DMP, rule 10) and a record created
years ago for a child who has come of age since (rule 11) cannot be made
through the API today; `services.records.lifecycle.create` writes them with the
same code path and outbox event as CreateDossier, so records' relay publishes
`dmp.records.dossier.created` and consent projects them like any other record.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from dmp.authz.v1 import principal_pb2
from dmp.records.v1 import records_pb2
from dmp_dev.testing.stack import LiveStack
from services.records import lifecycle
from services.records.settings import RecordsSettings

# Records created at a CPAM desk back then, imported as they stand.
IMPORTER = principal_pb2.Principal(
    kind=principal_pb2.PRINCIPAL_KIND_STAFF, subject="import-job", roles=["guichet_amo"]
)


def records_settings(stack: LiveStack) -> RecordsSettings:
    """records' settings as the running process has them (same key-encryption key)."""
    env = stack.secrets.records_env()
    return RecordsSettings.model_validate(
        {
            "database_url": stack.database_url("records"),
            "records_keks": env["DMP_RECORDS_KEKS"],
            "records_kek_id": env["DMP_RECORDS_KEK_ID"],
        }
    )


async def import_record(
    stack: LiveStack,
    request: records_pb2.CreateDossierRequest,
    *,
    now: datetime,
    legacy: bool = False,
) -> str:
    """Write one record as of `now`; its name."""
    settings = records_settings(stack)
    engine = create_async_engine(settings.database_url)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            dossier, _ = await lifecycle.create(
                session, request, IMPORTER, settings, now, legacy=legacy
            )
    finally:
        await engine.dispose()
    return str(dossier.name)
