"""Identity in-process against a fresh database, NATS and the real NotifyApp.

The identity app runs on a `kit.clock.ManualClock` so tests age codes, tokens and throttles
without sleeping; notify (and principal signatures) keep real time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from dmp.identity.v1 import identity_pb2_grpc
from dmp_dev.testing.databases import DatabaseFactory
from kit.clock import ManualClock
from kit.server import RunningServer, start_app
from services.identity.app import IdentityApp
from tests.identity.helpers import Rows, identity_settings


@pytest.fixture(scope="session")
def clock() -> ManualClock:
    return ManualClock()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def identity_db_url(databases: DatabaseFactory) -> str:
    return await databases.migrated("identity")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def identity_server(
    identity_db_url: str,
    nats_url: str,
    notify_server: RunningServer,
    clock: ManualClock,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningServer]:
    settings = identity_settings(
        identity_db_url, nats_url, notify_server.target, tmp_path_factory.mktemp("keys")
    )
    running = await start_app(IdentityApp(settings, clock=clock))
    yield running
    await running.stop(0.5)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stub(
    identity_server: RunningServer,
) -> AsyncIterator[identity_pb2_grpc.IdentityServiceStub]:
    async with grpc.aio.insecure_channel(identity_server.target) as channel:
        yield identity_pb2_grpc.IdentityServiceStub(channel)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def rows(identity_db_url: str, identity_server: RunningServer) -> AsyncIterator[Rows]:
    r = Rows(identity_db_url)
    yield r
    await r.engine.dispose()
