"""What the RPC handlers share: settings, database, hashers, signer, notify client, clock.

The clock (`kit.clock.Clock`, the process clock unless the app is given another)
is injectable so tests can age codes, tokens and throttles without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.clock import Clock
from kit.idempotency import Ledger
from kit.tokens import AccessTokenIssuer
from services.identity.models import processed_requests
from services.identity.notifier import Notifier
from services.identity.passwords import PasswordService
from services.identity.settings import IdentitySettings


@dataclass
class Runtime:
    settings: IdentitySettings
    db: async_sessionmaker[AsyncSession]
    passwords: PasswordService
    tokens: AccessTokenIssuer
    notifier: Notifier
    pepper: bytes
    clock: Clock

    @property
    def requests(self) -> Ledger:
        """Processed requests; hashed under the pepper because requests carry passwords."""
        return Ledger(processed_requests, self.pepper)
