"""pytest plugin loaded by every test run (`-p dmp_dev.testing.plugin` in pyproject)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dmp_dev.testing.databases import SMALL_POOLS, DatabaseFactory, backend
from dmp_dev.testing.nats_server import NatsServer


def pytest_configure(config: pytest.Config) -> None:
    for name, value in SMALL_POOLS.items():
        os.environ.setdefault(name, value)


def pytest_report_header() -> str:
    return f"dmp: database backend = {backend()}"


@pytest.fixture(scope="session")
def db_backend() -> str:
    return backend()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server with JetStream for the session, on a free port."""
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


@pytest.fixture(scope="session")
async def databases(
    db_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[DatabaseFactory]:
    """Factory of fresh databases, all dropped at the end of the session."""
    factory = DatabaseFactory(db_backend, Path(tmp_path_factory.mktemp("db")))
    yield factory
    await factory.drop_all()
