"""Gateway configuration (`DMP_*` variables, see deploy/k8s/base/gateway.yaml)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from kit.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    """The edge's knobs; upstream addresses are `DMP_<SERVICE>_TARGET`."""

    service_name: str = "gateway"
    grpc_port: int = Field(
        default=8443, ge=0, le=65535, description="mTLS port: CPS, staff and service certificates."
    )
    patient_port: int = Field(
        default=8444,
        ge=0,
        le=65535,
        description="TLS port without client certificates: patient bearer tokens (0 = any).",
    )
    patient_port_file: str = Field(default="", description="If set, the bound patient port.")
    gateway_http_port: int = Field(
        default=8446,
        ge=0,
        le=65535,
        description="HTTPS port of the HTTP/JSON door and the patient portal (0 = any).",
    )
    gateway_http_port_file: str = Field(default="", description="If set, the bound HTTP port.")
    http_max_body_bytes: int = Field(
        default=44 * 1024 * 1024,
        ge=1024,
        description="Largest JSON request body (413 BODY_TOO_LARGE beyond): the base64 of the "
        "largest gRPC message plus its JSON.",
    )
    http_csrf_secret: SecretStr | None = Field(
        default=None,
        description="Base64 key of the door's CSRF tokens, the same on every replica; unset: a "
        "random key per process (browser sessions then need a new login after a restart).",
    )
    portal_dir: str = Field(
        default="",
        description="Directory of the portal's static files served at /portail/ (empty: the "
        "gateway package's portal/static).",
    )
    tls_cert_file: str = Field(default="var/pki/gateway.crt", description="Server certificate.")
    tls_key_file: str = Field(default="var/pki/gateway.key", description="Server private key.")
    client_ca_file: str = Field(default="var/pki/ca.crt", description="CA of client cards.")
    client_crl_file: str = Field(
        default="", description="PEM CRL of the client CA (revoked cards); empty = none."
    )
    crl_reload_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often the CRL file is checked for changes (a revoked card is refused "
        "at most this long after the file changed).",
    )
    token_public_key_file: str = Field(
        default="var/keys/token_signing_key.pem.pub",
        description="identity's Ed25519 public key (patient access tokens).",
    )
    identity_target: str = Field(default="127.0.0.1:50051")
    records_target: str = Field(default="127.0.0.1:50052")
    consent_target: str = Field(default="127.0.0.1:50053")
    notify_target: str = Field(default="127.0.0.1:50054")
    history_feed_target: str = Field(default="127.0.0.1:50055")
    decision_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="Longest reuse of an Authorize decision (0 = no cache)."
    )
    certificate_cache_ttl_s: float = Field(
        default=300.0, ge=0, description="Reuse of a ResolveCertificate answer."
    )
    assertion_max_lifetime_s: float = Field(
        default=300.0,
        gt=0,
        le=900,
        description="Longest lifetime (exp - iat) of an establishment's user assertion.",
    )
    assertion_leeway_s: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="Clock difference tolerated on a user assertion's iat and exp.",
    )
    assertion_replay_max_entries: int = Field(
        default=1_000_000,
        ge=1,
        description="User-assertion ids remembered per replica until they expire (about 200 "
        "bytes each); when full, establishment calls are refused (ASSERTION_REPLAY_CACHE_FULL) "
        "until older ids expire.",
    )
    assertion_replay_shared: bool = Field(
        default=True,
        description="Also claim every user-assertion id in the NATS KV bucket "
        "DMP_ASSERTION_IDS, so an assertion is accepted once across all gateway replicas "
        "(establishment calls are refused ASSERTION_REPLAY_UNCHECKED while NATS is away).",
    )
    establishment_member_cache_ttl_s: float = Field(
        default=60.0,
        ge=0,
        description="Reuse of a GetEstablishmentMember answer (staff membership of an "
        "asserted RPPS).",
    )
    authorize_timeout_s: float = Field(default=3.0, gt=0)
    default_deadline_s: float = Field(
        default=60.0, gt=0, description="Upstream deadline when the client sets none."
    )
    rate_limit_per_s: float = Field(default=200.0, gt=0, description="Refill per principal.")
    rate_limit_burst: float = Field(default=400.0, ge=1, description="Bucket size per principal.")
    # Calls without a credential (StartLogin, VerifyOneTimeCode, RefreshToken,
    # RegisterPatientAccount, RecoverCredentials, ...) are limited per client address, as
    # `context.peer()` gives it. Behind a load balancer that address must be the client's:
    # the `gateway` and `gateway-patient` Services (deploy/k8s/base/gateway.yaml) are L4
    # LoadBalancers with `externalTrafficPolicy: Local`, which keeps the source address (no
    # SNAT to a node's). A proxy or a Service without it would put every client in one
    # bucket; PROXY protocol is not read. Many patients may share one IPv4 address (carrier
    # NAT), so the defaults leave room for sign-ups and token refreshes of a crowd; password
    # guessing on one identifier is bounded by identity (DMP_LOGIN_MAX_FAILURES).
    anonymous_rate_limit_per_s: float = Field(
        default=5.0, gt=0, description="Refill per client address of calls without a credential."
    )
    anonymous_rate_limit_burst: float = Field(
        default=50.0, ge=1, description="Bucket size per client address."
    )
    anonymous_rate_limit_max_addresses: int = Field(
        default=100_000,
        ge=1,
        description="Address buckets kept (about 250 bytes each); past it the least recently "
        "used one is forgotten. Full buckets are forgotten anyway.",
    )
    anonymous_ipv6_prefix: int = Field(
        default=64,
        ge=32,
        le=128,
        description="IPv6 clients share one bucket per network of this prefix length (a host "
        "can use every address of its /64).",
    )
    invalidate_on_events: bool = Field(
        default=True, description="Subscribe to dmp.consent.changed to drop cached decisions."
    )
    max_token_lifetime_s: float = Field(
        default=3600.0,
        gt=0,
        description="Longest access-token lifetime identity may issue (its access_token_ttl_s "
        "is at most 3600): session revocations are replayed and kept this long.",
    )
    revocation_max_entries: int = Field(
        default=250_000,
        ge=1,
        description="Revoked sessions kept in memory (about 200 bytes each); beyond it patient "
        "tokens are refused (REVOCATIONS_OVERFLOW) until older revocations expire.",
    )
    revocation_max_staleness_s: float = Field(
        default=30.0,
        gt=0,
        description="Patient tokens are refused (REVOCATIONS_STALE) when the revocation feed "
        "could not confirm it is in sync for this long (NATS away).",
    )
    revocation_start_wait_s: float = Field(
        default=10.0,
        ge=0,
        description="How long start-up waits for the revocation replay before returning; "
        "health stays NOT_SERVING until it has caught up.",
    )
