"""The test plugin's scheduling on a real two-worker run (`make test`'s `-n 2 --dist
loadgroup`): tests of one `xdist_group` run in one worker (pytest-xdist 3.8 under pytest 9
silently stopped grouping: both workers then booted a package's platform), and modules
marked `slow` are collected first (a long test collected last ran alone at the end)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GROUPED = """
import os, pytest
pytestmark = pytest.mark.xdist_group("together")

@pytest.mark.parametrize("n", range(6))
def test_grouped(n):
    with open(os.environ["RAN_FILE"], "a") as out:
        out.write(f"{os.environ.get('PYTEST_XDIST_WORKER', '-')} grouped\\n")
"""
ALONE = """
import os, pytest

@pytest.mark.parametrize("n", range(6))
def test_alone(n):
    with open(os.environ["RAN_FILE"], "a") as out:
        out.write(f"{os.environ.get('PYTEST_XDIST_WORKER', '-')} alone\\n")
"""
SLOW = """
import pytest
pytestmark = pytest.mark.slow

def test_slow_one():
    pass

def test_slow_two():
    pass
"""


def run_pytest(directory: Path, *args: str) -> str:
    env = {**os.environ, "RAN_FILE": str(directory / "ran.txt"), "DMP_TEST_DATABASE": "sqlite"}
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_XDIST_WORKER_COUNT", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "dmp_dev.testing.plugin",
            "-p",
            "no:cacheprovider",
            *args,
        ],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def make_suite(directory: Path) -> None:
    (directory / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    slow: long\n    xdist_group(name): one worker\n"
    )
    (directory / "test_a_grouped.py").write_text(GROUPED)
    (directory / "test_b_alone.py").write_text(ALONE)
    (directory / "test_c_slow.py").write_text(SLOW)


def test_a_group_runs_in_one_worker(tmp_path: Path) -> None:
    make_suite(tmp_path)
    run_pytest(tmp_path, "-n", "2", "--dist", "loadgroup", "-q")
    ran = [line.split() for line in (tmp_path / "ran.txt").read_text().splitlines()]
    grouped = {worker for worker, kind in ran if kind == "grouped"}
    assert len([1 for _, kind in ran if kind == "grouped"]) == 6
    assert len(grouped) == 1, ran
    # The ungrouped tests still spread over both workers.
    assert {worker for worker, _ in ran} == {"gw0", "gw1"}, ran


def test_slow_modules_are_collected_first(tmp_path: Path) -> None:
    make_suite(tmp_path)
    collected = run_pytest(tmp_path, "-p", "no:xdist", "--collect-only", "-q").splitlines()
    ids = [line for line in collected if "::" in line]
    assert ids[:2] == ["test_c_slow.py::test_slow_one", "test_c_slow.py::test_slow_two"], ids
    assert len(ids) == 14
