"""`python -m services.records`: run the records service."""

from __future__ import annotations

from kit.server import run_app
from services.records.app import RecordsApp
from services.records.settings import RecordsSettings


def main() -> None:
    run_app(RecordsApp(RecordsSettings()))


if __name__ == "__main__":
    main()
