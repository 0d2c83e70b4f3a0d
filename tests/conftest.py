"""Fixtures shared across test areas (each lives in `tests/fixtures/<area>.py`)."""

pytest_plugins = [
    "tests.fixtures.notify",
    "tests.fixtures.history",
    "tests.fixtures.records",
    "tests.fixtures.consent",
    "tests.fixtures.stack",
]
