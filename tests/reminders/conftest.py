"""A launcher-started platform of its own for the vaccination reminder tests (fixture `live`,
package scope): they move the platform's clock by days (a booster is due weeks after the
vaccination) and restart notify and NATS, which the session's `stack` must not see. notify
polls its reminder schedule every 0.2 s (30 s by default) so a test waits little once the
clock passed a due time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from dmp_dev.testing.databases import DatabaseFactory
from dmp_dev.testing.stack import LiveStack, running_stack


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def live(
    databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveStack]:
    var_dir = tmp_path_factory.mktemp("reminders") / "var"
    extra_env = {"notify": {"DMP_REMINDER_POLL_S": "0.2"}}
    async with running_stack(databases, var_dir, extra_env=extra_env) as stack:
        yield stack
