"""pytest plugin loaded by every test run (`-p dmp_dev.testing.plugin` in pyproject)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from _pytest.nodeid import NodeId

from dmp_dev.testing.databases import SMALL_POOLS, DatabaseFactory, backend
from dmp_dev.testing.nats_server import NatsServer


def pytest_configure(config: pytest.Config) -> None:
    for name, value in SMALL_POOLS.items():
        os.environ.setdefault(name, value)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first, then the xdist groups pytest-xdist 3.8 no longer forms.

    Order: `make test`'s scheduler (`--dist loadgroup`) hands out work in collection order
    (its groups first, largest first), so a long test collected last ran alone at the end
    while the other worker sat idle (`tests/test_launcher.py`, two platform boots, ~40 s on
    a quiet machine). Tests marked `slow` (a whole platform or many processes) now come
    first, whole modules at a time (their module fixtures are set up once), in collection
    order: the same on every worker, as xdist requires.

    Groups: xdist's worker tags a grouped test by appending `@<group>` to `item._nodeid`, which
    pytest 9 no longer reads (a node's id is `item._id`, a `NodeId`): every `xdist_group`
    test was scheduled on its own, so both workers booted a package's platform (the fault
    tests', the reminders') and shared nothing. The tag is put where pytest reads it.
    `tests/test_test_plugin.py` checks both on a real two-worker run.
    """
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: 0 if item.path in slow_modules else 1)
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = sorted(
            {
                str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                for m in item.iter_markers("xdist_group")
            }
        )
        suffix = "@" + "_".join(names)
        if names and not item.nodeid.endswith(suffix):
            item._id = NodeId.parse(item.nodeid + suffix)


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
