"""Regenerates the portal screenshots the README shows (docs/screenshots/).

The images are the browser tests' own artefacts: this runs tests/portal (real headless
Chromium on a launcher-started platform, axe-core on every page) with
DMP_PORTAL_SCREENSHOTS pointing at a temporary directory, then copies the README's pages,
at phone and desktop widths, into docs/screenshots/. A failing test copies nothing: a
screenshot in the README is always of a page that passed its accessibility check.

    python -m dmp_dev.tools.screenshots            # the README's pages
    python -m dmp_dev.tools.screenshots --all      # every page of both tests
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "docs" / "screenshots"
TESTS = ["tests/portal/test_journey.py", "tests/portal/test_pages.py"]
#: The pages the README shows (names of tests/portal's check_page calls).
README_PAGES = [
    "02-connexion",
    "04-accueil",
    "06-document",
    "07-professionnels",
    "08-historique-des-acces",
    "09-profil-medical",
]
WIDTHS = ["telephone", "ordinateur"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="copy every page, not the README's")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="portal-shots-") as tmp:
        env = {**os.environ, "DMP_PORTAL_SCREENSHOTS": tmp}
        done = subprocess.run(  # noqa: S603 - this interpreter's pytest on our own tests
            [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", *TESTS],
            cwd=ROOT,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            print("browser tests failed: screenshots left unchanged", file=sys.stderr)
            return done.returncode
        shots = sorted(Path(tmp).glob("*.png"))
        if not args.all:
            wanted = {f"{page}-{width}.png" for page in README_PAGES for width in WIDTHS}
            shots = [shot for shot in shots if shot.name in wanted]
            missing = wanted - {shot.name for shot in shots}
            if missing:
                print(f"the tests took no screenshot named {sorted(missing)}", file=sys.stderr)
                return 1
        TARGET.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copyfile(shot, TARGET / shot.name)
            print(TARGET.relative_to(ROOT) / shot.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
