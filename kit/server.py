"""grpc.aio server bootstrap shared by every service.

A service is a `ServiceApp`: it opens its resources in `start`, registers its
servicers, and closes them in `stop`. `run_app` adds health checking,
reflection and the interceptors, then serves until SIGTERM/SIGINT, when it
reports NOT_SERVING, lets in-flight calls finish within the grace period and
closes resources.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import signal
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kit import migrations
from kit import nats as kit_nats
from kit.db import create_engine, pool_options, session_factory
from kit.interceptors import ServiceInterceptor
from kit.logs import configure_logging, get_logger
from kit.metrics import MetricsServer, serve_metrics
from kit.outbox import OutboxRelay
from kit.settings import ServiceSettings
from kit.tracing import configure_tracing

log = get_logger(__name__)

#: Exit status of a service refused at start because its schema is not at its migration
#: head (sysexits EX_CONFIG: the deployment, not the code, must change).
EXIT_SCHEMA_NOT_CURRENT = 78


class ServiceApp(abc.ABC):
    """One DMP service process: its database, its NATS link, its servicers."""

    name: str = ""
    #: Set by services that publish events through the outbox.
    outbox: Table | None = None

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.engine: AsyncEngine | None = None
        self.sessions: async_sessionmaker[AsyncSession] | None = None
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.relay: OutboxRelay | None = None

    @property
    def keys(self) -> dict[str, bytes]:
        return self.settings.principal_key_bytes()

    async def start(self) -> None:
        """Open the database and NATS; start the outbox relay.

        The database must already be at this code's migration head (`dmp migrate up`, run
        once per rollout): a service never migrates, since its replicas would race each
        other. Otherwise SchemaNotCurrentError, before anything else is opened.
        """
        if self.settings.database_url:
            engine = create_engine(
                self.settings.database_url,
                **pool_options(
                    self.settings.database_url,
                    self.settings.database_pool_size,
                    self.settings.database_max_overflow,
                ),
            )
            try:
                await migrations.require_current(self.name, engine)
            except BaseException:
                await engine.dispose()
                raise
            self.engine = engine
            self.sessions = session_factory(self.engine)
        if self.needs_nats():
            self.nc = await kit_nats.connect(
                self.settings.nats_url,
                self.name,
                reconnected_cb=self.nats_reconnected,
                disconnected_cb=self.nats_disconnected,
            )
            self.js = self.nc.jetstream()
            spec = kit_nats.STREAMS.get(self.name)
            if spec is not None:
                await kit_nats.ensure_stream(
                    self.js, spec, replicas=self.settings.nats_stream_replicas
                )
        if self.outbox is not None and self.sessions is not None and self.js is not None:
            self.relay = OutboxRelay(
                self.sessions,
                self.outbox,
                self.js,
                database_url=self.settings.database_url,
                service=self.name,
            )
            self.relay.start()

    def needs_nats(self) -> bool:
        return self.outbox is not None

    async def nats_disconnected(self) -> None:
        """NATS lost (its node down, the client moving to another): core messages published
        until `nats_reconnected` never reach this process. A service whose in-memory state
        follows core messages (consent's snapshots) drops it here and there."""
        return

    async def nats_reconnected(self) -> None:
        """Connected again, possibly to another node of the cluster (see `nats_disconnected`)."""
        return

    def server_options(self) -> Sequence[tuple[str, Any]]:
        """Extra grpc server channel arguments (e.g. a bulk-ingest service's stream window)."""
        return ()

    async def stop(self) -> None:
        if self.relay is not None:
            await self.relay.stop()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        if self.engine is not None:
            await self.engine.dispose()

    @property
    def db(self) -> async_sessionmaker[AsyncSession]:
        if self.sessions is None:
            raise RuntimeError(f"{self.name}: database not started")
        return self.sessions

    @abc.abstractmethod
    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        """Add servicers to `server`; return the full names of the services added."""


class RunningServer:
    """A started server: its port, its health servicer, its app."""

    def __init__(
        self, app: ServiceApp, server: grpc.aio.Server, port: int, health_servicer: Any
    ) -> None:
        self.app = app
        self.server = server
        self.port = port
        self.health = health_servicer
        self.service_names: list[str] = []
        self.probe_server: grpc.aio.Server | None = None
        self.metrics: MetricsServer | None = None

    @property
    def target(self) -> str:
        return f"{self.app.settings.grpc_host}:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
        for name in [*self.service_names, ""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(self.app.settings.shutdown_grace_s if grace is None else grace)
        if self.probe_server is not None:
            await self.probe_server.stop(0)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
        await self.app.stop()


async def start_app(app: ServiceApp) -> RunningServer:
    """Start `app` and its gRPC server; return once it is SERVING."""
    settings = app.settings
    await app.start()
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
        *app.server_options(),
    ]
    server = grpc.aio.server(
        # One interceptor: authentication, server span and RED metrics in a single wrapper.
        interceptors=[ServiceInterceptor(app.name, app.keys)],
        options=options,
    )
    names = list(app.register(server))
    health_servicer = health.aio.HealthServicer()
    # grpcio's servicer answers SERVING for "" from birth: NOT_SERVING until the end of start-up.
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = server.add_insecure_port(f"{settings.grpc_host}:{settings.grpc_port}")
    if port == 0:
        raise RuntimeError(f"{app.name}: cannot bind {settings.grpc_host}:{settings.grpc_port}")
    await server.start()
    running = RunningServer(app, server, port, health_servicer)
    running.service_names = names
    if settings.probe_port:
        running.probe_server = await _start_probe_server(health_servicer, settings)
    running.metrics = serve_metrics(settings.grpc_host, settings.metrics_port)
    for name in [*names, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if settings.port_file:
        path = Path(settings.port_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.replace(path)
    log.info("serving", port=port, services=names)
    return running


async def _start_probe_server(health_servicer: Any, settings: ServiceSettings) -> grpc.aio.Server:
    """Health only, plaintext, on its own port: kubelet gRPC probes need neither TLS nor authz."""
    probe = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probe)
    if probe.add_insecure_port(f"{settings.grpc_host}:{settings.probe_port}") == 0:
        raise RuntimeError(f"cannot bind probe port {settings.probe_port}")
    await probe.start()
    return probe


async def _serve_forever(app: ServiceApp) -> None:
    running = await start_app(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping", grace_s=app.settings.shutdown_grace_s)
    await running.stop()
    log.info("stopped")


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    uvloop.run(main)  # a pinned dependency (measured: +12-16% gRPC throughput on 2 cores)


def run_app(app: ServiceApp) -> None:
    """Process entry point of a service (`python -m services.<name>`)."""
    configure_logging(app.name, app.settings.log_level, app.settings.log_json)
    settings = app.settings
    configure_tracing(
        app.name,
        settings.trace_exporter,
        otlp_endpoint=settings.otlp_endpoint,
        sample_ratio=settings.trace_sample_ratio,
    )
    try:
        _run_loop(_serve_forever(app))
    except migrations.SchemaNotCurrentError as exc:
        log.error("refusing to start: database schema not current", detail=str(exc))
        raise SystemExit(EXIT_SCHEMA_NOT_CURRENT) from None
