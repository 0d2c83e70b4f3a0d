"""Real headless Chromium for the portal's browser tests, driven by Playwright.

The browser is Debian's `chromium` (never `playwright install`: no download at test time).
In CI (`CI=true`) a missing browser or Playwright fails the run; on a developer's machine
the tests skip with the reason. axe-core comes from `node_modules` (package.json), injected
through the DevTools protocol, which the portal's Content Security Policy does not govern
(a <script> tag would be refused, as it should be).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import PASSWORD, mails_to, one_time_code

try:
    from playwright.async_api import Browser, BrowserContext, Page, async_playwright
except ImportError:  # pragma: no cover - reported by `browser` below
    async_playwright = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("DMP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: The widths every page of the journey is checked and photographed at.
VIEWPORTS = {
    "telephone": {"width": 390, "height": 844},
    "ordinateur": {"width": 1280, "height": 800},
}
#: Where screenshots go: DMP_PORTAL_SCREENSHOTS, else a temporary directory of the run.
SCREENSHOTS_ENV = "DMP_PORTAL_SCREENSHOTS"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
WAIT_MS = 20_000


def _missing() -> str | None:
    if async_playwright is None:
        return "Playwright is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} is missing (apt-get install -y --no-install-recommends chromium)"
    if not AXE.exists():
        return f"{AXE} is missing (npm install)"
    return None


def require_browser() -> None:
    """Skip here, fail in CI: the browser tests are never skipped there."""
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


@dataclass
class Watched:
    """A browser context whose pages report every script error, CSP refusal and failed
    request: a portal that relies on something the policy forbids shows up here."""

    context: BrowserContext
    page: Page
    problems: list[str] = field(default_factory=list)

    def expected_refusal(self, status: int) -> None:
        """Takes back the console lines Chromium logs for refusals the test caused."""
        line = f"console: Failed to load resource: the server responded with a status of {status}"
        others = [p for p in self.problems if not p.startswith(line)]
        assert len(others) < len(self.problems), (status, self.problems)
        self.problems[:] = others


async def open_context(browser: Browser, **options: Any) -> Watched:
    context = await browser.new_context(
        ignore_https_errors=True, locale="fr-FR", viewport=VIEWPORTS["ordinateur"], **options
    )
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    watched = Watched(context, page)

    def on_console(message: Any) -> None:
        if message.type == "error" and not _expected_console(message.text):
            watched.problems.append(f"console: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))
    return watched


def _expected_console(text: str) -> bool:
    # Chromium logs every 4xx answer of fetch() (the session probe before login says 401).
    return bool(re.search(r"Failed to load resource: .* status of 40[13]", text))


async def check_page(watched: Watched, name: str, shots: Path) -> None:
    """axe-core at phone and desktop widths (no serious or critical violation), then a
    full-page screenshot at each width, `shots/<name>-<width>.png`."""
    page = watched.page
    await page.locator("main [aria-busy='true']").wait_for(state="detached")
    source = AXE.read_text(encoding="utf-8")
    await page.mouse.move(0, 0)  # no hover state left over from the last click
    original = page.viewport_size
    try:
        for label, size in VIEWPORTS.items():
            await page.set_viewport_size(size)
            if not await page.evaluate("typeof window.axe !== 'undefined'"):
                await page.evaluate(source)
            result = await page.evaluate(
                "async (tags) => { const r = await axe.run(document,"
                " {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});"
                " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
                " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})); }",
                AXE_TAGS,
            )
            bad = [v for v in result if v["impact"] in ("serious", "critical")]
            assert not bad, f"axe on {name} ({label}): {bad}"
            await page.screenshot(path=str(shots / f"{name}-{label}.png"), full_page=True)
    finally:
        if original:
            await page.set_viewport_size(original)
    assert not watched.problems, watched.problems


async def sign_in(watched: Watched, portal_url: str, mail_dir: Path, ins: str, email: str) -> None:
    """Logs in through the portal's two steps, the code read from the dev mail sink."""
    page = watched.page
    seen = len(mails_to(mail_dir, email))
    await page.goto(portal_url)
    await page.get_by_role("heading", level=1, name="Se connecter").wait_for()
    await page.get_by_label("Numéro de sécurité sociale").fill(ins)
    await page.get_by_label("Mot de passe (obligatoire)", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Continuer").click()
    await page.get_by_role("heading", name="Saisissez votre code").wait_for()
    await page.get_by_label("Code reçu (6 chiffres)").fill(
        await one_time_code(mail_dir, email, seen)
    )
    await page.get_by_role("button", name="Me connecter").click()
    await page.get_by_role("heading", level=1, name="Mon espace santé").wait_for()


async def go(watched: Watched, link: str, heading: str) -> None:
    """Follows a menu link and waits for the page's heading and content."""
    page = watched.page
    menu = page.get_by_role("navigation", name="Menu principal")
    await menu.get_by_role("link", name=link, exact=True).click()
    await page.get_by_role("heading", level=1, name=heading).wait_for()
    await page.locator("main [aria-busy='true']").wait_for(state="detached")
