"""Fixtures of the browser tests: one Chromium per module, the screenshot directory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.portal import browser as chromium


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    chromium.require_browser()
    async with chromium.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium.CHROMIUM, args=chromium.CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get(chromium.SCREENSHOTS_ENV)
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("portal-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
