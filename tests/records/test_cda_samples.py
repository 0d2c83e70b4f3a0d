"""The CDA samples the tests ship are the CI-SIS examples of ../shared/data/samples/cda, byte
for byte (when that directory is present next to the repo), so the tests keep checking what
the reference documents really say."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.records.cda_samples import SAMPLE_DIR, SAMPLES

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / ".." / "shared" / "data" / "samples" / "cda"
HISTORY_COPY = REPO / "tests" / "history" / "data" / "CNAM-HR_2021.01.xml"

pytestmark = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"reference samples not found at {REFERENCE.resolve()}"
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_reference_sample_is_shipped() -> None:
    assert sorted(p.name for p in REFERENCE.glob("*.xml")) == sorted(SAMPLES)
    assert sorted(p.name for p in SAMPLE_DIR.glob("*.xml")) == sorted(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_shipped_copy_is_identical(name: str) -> None:
    assert _digest(SAMPLE_DIR / name) == _digest(REFERENCE / name)


def test_history_copy_of_the_reimbursement_history_is_identical() -> None:
    assert _digest(HISTORY_COPY) == _digest(REFERENCE / HISTORY_COPY.name)
