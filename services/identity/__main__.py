"""`python -m services.identity`: run the identity service."""

from __future__ import annotations

from kit.server import run_app
from services.identity.app import IdentityApp
from services.identity.settings import IdentitySettings


def main() -> None:
    run_app(IdentityApp(IdentitySettings()))


if __name__ == "__main__":
    main()
