"""`python -m services.notify`: run the notify service."""

from __future__ import annotations

from kit.server import run_app
from services.notify.app import NotifyApp
from services.notify.settings import NotifySettings


def main() -> None:
    run_app(NotifyApp(NotifySettings()))


if __name__ == "__main__":
    main()
