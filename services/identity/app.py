"""The identity service process."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from dmp.identity.v1 import identity_pb2, identity_pb2_grpc
from kit import clock as kit_clock
from kit.clients import InternalCredentials
from kit.clock import Clock
from kit.server import ServiceApp
from kit.tokens import AccessTokenIssuer, ensure_dev_key_pair, load_private_key
from services.identity import models
from services.identity.notifier import Notifier
from services.identity.passwords import Argon2Params, PasswordService
from services.identity.runtime import Runtime
from services.identity.servicer import IdentityServicer
from services.identity.settings import IdentitySettings


class IdentityApp(ServiceApp):
    """Accounts, login, tokens and the professional directory."""

    name = "identity"
    outbox = models.outbox

    def __init__(self, settings: IdentitySettings, *, clock: Clock | None = None) -> None:
        super().__init__(settings)
        self.identity_settings = settings
        self.clock: Clock = clock or kit_clock.PROCESS
        self.runtime: Runtime | None = None
        self._notifier: Notifier | None = None

    @property
    def argon2_params(self) -> Argon2Params:
        s = self.identity_settings
        return Argon2Params(
            time_cost=s.argon2_time_cost,
            memory_cost=s.argon2_memory_cost,
            parallelism=s.argon2_parallelism,
            hash_len=s.argon2_hash_len,
            salt_len=s.argon2_salt_len,
        )

    async def start(self) -> None:
        s = self.identity_settings
        # Fail fast on bad secrets before opening anything.
        pepper = s.pepper_bytes()
        key = (
            ensure_dev_key_pair(s.token_signing_key_file)
            if s.token_signing_key_create
            else load_private_key(s.token_signing_key_file)
        )
        await super().start()
        self._notifier = Notifier(
            s.notify_target,
            s.notify_timeout_s,
            InternalCredentials(self.name, s.principal_key_id, self.keys),
        )
        self.runtime = Runtime(
            settings=s,
            db=self.db,
            passwords=PasswordService(self.argon2_params),
            tokens=AccessTokenIssuer(key, ttl=s.access_token_ttl),
            notifier=self._notifier,
            pepper=pepper,
            clock=self.clock,
        )

    async def stop(self) -> None:
        if self._notifier is not None:
            await self._notifier.close()
        await super().stop()

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        if self.runtime is None:
            raise RuntimeError("identity: start() must run before register()")
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(
            IdentityServicer(self.runtime), server
        )
        return [identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name]
