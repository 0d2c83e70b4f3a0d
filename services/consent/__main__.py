"""`python -m services.consent`: run the consent service."""

from __future__ import annotations

from kit.server import run_app
from services.consent.app import ConsentApp
from services.consent.settings import ConsentSettings


def main() -> None:
    run_app(ConsentApp(ConsentSettings()))


if __name__ == "__main__":
    main()
