"""Assembles the gateway: TLS listeners, upstream channels, authn, authz, proxy, cache events,
the session revocation feed and the CRL watcher.

gRPC Python cannot *request* an optional client certificate
(`require_client_auth=False` does not ask for one at all), so the gateway has
two TLS listeners sharing one handler: the card port (`DMP_GRPC_PORT`, 8443)
requires a client certificate chaining to the configured CA; the patient port
(`DMP_PATIENT_PORT`) asks for none and takes bearer tokens.

The health answers SERVING only once the revocation feed has replayed the
revocations of the last token lifetime (`gateway.revocations`): until then a
patient token cannot be checked, so the launcher and Kubernetes wait; and
once the shared bucket of user-assertion ids is open (`gateway.replay`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from nats.aio.client import Client
from nats.aio.msg import Msg

from dmp.consent.v1 import consent_pb2_grpc, events_pb2
from dmp.identity.v1 import identity_pb2_grpc
from dmp.records.v1 import records_pb2_grpc
from gateway.assertion import AssertionVerifier, ReplayCache
from gateway.authn import Authenticator
from gateway.authz import Decisions
from gateway.crl import CrlWatcher
from gateway.http.door import Door
from gateway.http.portal import DEFAULT_DIR as PORTAL_DIR
from gateway.http.rules import Router, build_http_routes
from gateway.http.server import RunningDoor, start_door, tls_context
from gateway.http.session import CsrfTokens
from gateway.proxy import Forwarder, Gate, ProxyHandler
from gateway.ratelimit import RateLimiter
from gateway.replay import SharedReplayStore
from gateway.revocations import CLOCK_MARGIN_S, RevocationFeed, RevokedSessions
from gateway.routing import Route, build_routes, targets
from gateway.settings import GatewaySettings
from kit import nats as kit_nats
from kit.clients import InternalCredentials, channel_options
from kit.logs import get_logger
from kit.metrics import MetricsServer, serve_metrics
from kit.observe import InstrumentedHandler, RpcObserver
from kit.tokens import AccessTokenVerifier, load_public_key

log = get_logger(__name__)
CONSENT_CHANGED = "dmp.consent.changed"


@dataclass
class RunningGateway:
    settings: GatewaySettings
    server: grpc.aio.Server
    port: int
    patient_port: int
    decisions: Decisions
    authn: Authenticator
    channels: dict[str, grpc.aio.Channel]
    probe: grpc.aio.Server | None = None
    nc: Client | None = None
    metrics: MetricsServer | None = None
    health_servicer: health.aio.HealthServicer = field(default_factory=health.aio.HealthServicer)
    revocations: RevocationFeed | None = None
    crl: CrlWatcher | None = None
    serving: asyncio.Task[None] | None = None
    replay: SharedReplayStore | None = None
    http: RunningDoor | None = None

    @property
    def http_port(self) -> int:
        return self.http.port if self.http is not None else 0

    async def stop(self, grace: float | None = None) -> None:
        if self.serving is not None:
            self.serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.serving
        await self.health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.http is not None:
            await self.http.stop()
        await self.server.stop(self.settings.shutdown_grace_s if grace is None else grace)
        if self.crl is not None:
            await self.crl.stop()
        if self.revocations is not None:
            await self.revocations.stop()
        if self.replay is not None:
            await self.replay.stop()
        if self.probe is not None:
            await self.probe.stop(0)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        for channel in self.channels.values():
            await channel.close()


def _upstream(target: str, max_bytes: int) -> grpc.aio.Channel:
    # No client interceptors on the hot path: trace headers are forwarded as metadata.
    # kit's options: reconnect backoff and the retry policy (UNAVAILABLE, safe methods only).
    return grpc.aio.insecure_channel(target, options=channel_options(max_bytes, target))


def _read_material(
    settings: GatewaySettings,
) -> tuple[bytes, tuple[bytes, bytes], Ed25519PublicKey | None]:
    """Client CA, server key pair and the token key, read once at start."""
    ca_pem = Path(settings.client_ca_file).read_bytes()
    pair = (Path(settings.tls_key_file).read_bytes(), Path(settings.tls_cert_file).read_bytes())
    token_path = settings.token_public_key_file
    token_key = load_public_key(token_path) if token_path and Path(token_path).exists() else None
    return ca_pem, pair, token_key


def _authentication(
    settings: GatewaySettings,
    identity: grpc.aio.Channel,
    credentials: InternalCredentials,
    ca_pem: bytes,
    token_key: Ed25519PublicKey | None,
) -> tuple[Authenticator, CrlWatcher]:
    """The authenticator with its revoked sessions, and the CRL (loaded now: fail at start)."""
    verifier = AccessTokenVerifier([token_key]) if token_key is not None else None
    if verifier is None:
        log.warning("no_token_key", detail="patient tokens will be refused")
    sessions = RevokedSessions(
        horizon_s=settings.max_token_lifetime_s + CLOCK_MARGIN_S,
        max_entries=settings.revocation_max_entries,
        max_staleness_s=settings.revocation_max_staleness_s,
    )
    authn = Authenticator(
        identity_pb2_grpc.IdentityServiceStub(identity),
        credentials,
        verifier,
        sessions=sessions,
        assertions=AssertionVerifier(
            ReplayCache(settings.assertion_replay_max_entries),
            max_lifetime_s=settings.assertion_max_lifetime_s,
            leeway_s=settings.assertion_leeway_s,
        ),
        shared_replay=(
            SharedReplayStore(
                settings.nats_url,
                settings.assertion_max_lifetime_s + 2 * settings.assertion_leeway_s,
                replicas=settings.nats_stream_replicas,
            )
            if settings.assertion_replay_shared
            else None
        ),
        member_cache_ttl_s=settings.establishment_member_cache_ttl_s,
        cache_ttl_s=settings.certificate_cache_ttl_s,
        timeout_s=settings.authorize_timeout_s,
    )
    crl = CrlWatcher(
        settings.client_crl_file, ca_pem, authn.set_revoked, settings.crl_reload_interval_s
    )
    authn.set_revoked(crl.load())
    return authn, crl


def _gate(settings: GatewaySettings, authn: Authenticator, decisions: Decisions) -> Gate:
    return Gate(
        authn,
        decisions,
        RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        RateLimiter(
            settings.anonymous_rate_limit_per_s,
            settings.anonymous_rate_limit_burst,
            max_buckets=settings.anonymous_rate_limit_max_addresses,
            message="Too many requests from this address; retry later.",
        ),
        ipv6_prefix=settings.anonymous_ipv6_prefix,
    )


async def _start_http(
    settings: GatewaySettings, routes: dict[str, Route], forwarder: Forwarder, observer: RpcObserver
) -> RunningDoor:
    """The HTTP/JSON door on its own HTTPS port, with the gRPC edge's certificate."""
    secret = settings.http_csrf_secret
    door = Door(
        Router(build_http_routes(routes)),
        forwarder,
        observer,
        CsrfTokens(base64.b64decode(secret.get_secret_value()) if secret else None),
        settings.http_max_body_bytes,
    )
    tls = tls_context(settings.tls_cert_file, settings.tls_key_file)
    portal = Path(settings.portal_dir) if settings.portal_dir else PORTAL_DIR
    host = settings.grpc_host.strip("[]")  # gRPC's `[::]` is asyncio's `::`
    return await start_door(door, host, settings.gateway_http_port, tls, portal)


async def start_gateway(settings: GatewaySettings) -> RunningGateway:
    """Start both listeners (and the probe port); return once SERVING, or after
    `revocation_start_wait_s` if the revocation replay has not caught up (the health
    turns SERVING when it does)."""
    keys = settings.principal_key_bytes()
    key_id = settings.principal_key_id
    ca_pem, pair, token_key = _read_material(settings)
    credentials = InternalCredentials("gateway", key_id, keys)
    channels = {
        name: _upstream(target, settings.max_message_bytes)
        for name, target in targets(settings).items()
    }
    authn, crl = _authentication(settings, channels["identity"], credentials, ca_pem, token_key)
    decisions = Decisions(
        consent_pb2_grpc.ConsentServiceStub(channels["consent"]),
        credentials,
        key_id,
        keys[key_id],
        records=records_pb2_grpc.RecordsServiceStub(channels["records"]),
        ttl_s=settings.decision_cache_ttl_s,
        timeout_s=settings.authorize_timeout_s,
    )
    gate = _gate(settings, authn, decisions)
    routes = build_routes()
    forwarder = Forwarder(routes, channels, gate, settings.default_deadline_s)
    handler = ProxyHandler(routes, channels, forwarder)
    observer = RpcObserver("gateway")
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    # Server span + RED metrics per call, wrapped once per route.
    server.add_generic_rpc_handlers((InstrumentedHandler(handler, observer),))
    health_servicer = health.aio.HealthServicer()
    # grpcio's servicer answers SERVING for "" from birth: say NOT_SERVING until the revocation
    # replay has caught up, or a readiness probe (and the launcher) would route patients to a
    # gateway that can only answer REVOCATIONS_NOT_READY.
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    cards = grpc.ssl_server_credentials([pair], root_certificates=ca_pem, require_client_auth=True)
    tls_only = grpc.ssl_server_credentials([pair])
    port = server.add_secure_port(f"{settings.grpc_host}:{settings.grpc_port}", cards)
    patient_port = server.add_secure_port(f"{settings.grpc_host}:{settings.patient_port}", tls_only)
    if port == 0 or patient_port == 0:
        raise RuntimeError("gateway: cannot bind its ports")
    await server.start()
    running = RunningGateway(
        settings,
        server,
        port,
        patient_port,
        decisions,
        authn,
        channels,
        health_servicer=health_servicer,
        crl=crl,
    )
    crl.start()
    running.http = await _start_http(settings, routes, forwarder, observer)
    if authn.shared_replay is not None:
        running.replay = authn.shared_replay
        running.replay.start()
    feed = running.revocations = RevocationFeed(settings.nats_url, authn.sessions)
    feed.start()
    if settings.probe_port:
        probe = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probe)
        probe.add_insecure_port(f"{settings.grpc_host}:{settings.probe_port}")
        await probe.start()
        running.probe = probe
    running.metrics = serve_metrics(settings.grpc_host, settings.metrics_port)
    if settings.invalidate_on_events:
        running.nc = await _subscribe_changes(settings.nats_url, decisions)
    running.serving = asyncio.create_task(_serve_when_ready(feed, health_servicer, running.replay))
    try:
        await asyncio.wait_for(asyncio.shield(running.serving), settings.revocation_start_wait_s)
    except TimeoutError:
        log.warning("revocations_not_ready", detail="NOT_SERVING until the replay caught up")
    _write_port_files(settings, running)
    log.info("serving", port=port, patient_port=patient_port, http_port=running.http_port)
    return running


def _write_port_files(settings: GatewaySettings, running: RunningGateway) -> None:
    """Bound ports for the launcher (written atomically: a reader never sees half a file)."""
    for path, value in (
        (settings.port_file, running.port),
        (settings.patient_port_file, running.patient_port),
        (settings.gateway_http_port_file, running.http_port),
    ):
        if path:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.with_suffix(".tmp").write_text(str(value))
            target.with_suffix(".tmp").replace(target)


async def _serve_when_ready(
    feed: RevocationFeed,
    servicer: health.aio.HealthServicer,
    replay: SharedReplayStore | None = None,
) -> None:
    """SERVING once every revocation still relevant is known (patient tokens can be checked)
    and the shared assertion-id bucket is open (establishment calls can be checked)."""
    await feed.wait_ready()
    if replay is not None:
        await replay.ready.wait()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)


async def _subscribe_changes(url: str, decisions: Decisions) -> Client:
    """An ephemeral core subscription on every node of the cluster (`url` may list them).

    While the connection is down (its NATS node lost, the client moving to another) the
    events published meanwhile never reach this replica: stop caching decisions then, and
    drop them all once back, so a block issued during the gap holds at once.
    """

    async def on_disconnected() -> None:
        decisions.caching = False
        decisions.invalidate("")

    async def on_reconnected() -> None:
        decisions.invalidate("")
        decisions.caching = True

    async def on_change(msg: Msg) -> None:
        try:
            event = events_pb2.ConsentChanged.FromString(msg.data)
        except Exception:
            decisions.invalidate("")
            return
        decisions.invalidate(event.dossier)

    nc = await kit_nats.connect(
        url, "gateway", reconnected_cb=on_reconnected, disconnected_cb=on_disconnected
    )
    await nc.subscribe(CONSENT_CHANGED, cb=on_change)
    await nc.flush()
    return nc
