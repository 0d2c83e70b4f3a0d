"""Prometheus metrics of every DMP process, served on its admin port (`DMP_METRICS_PORT`).

RED per RPC (server side, the gateway included) and per JetStream consumer,
plus the two backlogs an operator pages on: the outbox (rows committed but not
yet published) and each durable consumer (messages not yet delivered). Labels
are bounded: method paths come from the registered services, consumer names
from the code, never from request content.

Hot paths hold pre-bound children (`labels()` costs a dict lookup and a lock),
so an RPC costs one histogram observation and one counter increment.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Latency buckets (seconds) around the platform's goals: ms for cached reads, s for uploads.
_RPC_BUCKETS = (
    *(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05),
    *(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

RPC_REQUESTS = Counter(
    "dmp_rpc_requests",
    "RPCs served, by final gRPC status code.",
    ["service", "method", "code"],
)
RPC_ERRORS = Counter(
    "dmp_rpc_errors",
    "RPCs that ended with a status other than OK, by code.",
    ["service", "method", "code"],
)
RPC_DURATION = Histogram(
    "dmp_rpc_duration_seconds",
    "Time from the call reaching the handler to its final status.",
    ["service", "method"],
    buckets=_RPC_BUCKETS,
)

CONSUMER_MESSAGES = Counter(
    "dmp_consumer_messages",
    "Messages handled by a durable consumer, by outcome (ack, retry, dead, rejected).",
    ["consumer", "outcome"],
)
CONSUMER_FAILURES = Counter(
    "dmp_consumer_failures",
    "Messages whose handler failed (retried, dead-lettered or rejected).",
    ["consumer"],
)
CONSUMER_DURATION = Histogram(
    "dmp_consumer_processing_seconds",
    "Handler time per message, ack included.",
    ["consumer"],
    buckets=_RPC_BUCKETS,
)
CONSUMER_PENDING = Gauge(
    "dmp_consumer_pending_messages",
    "Messages of the stream not yet delivered to the consumer (sampled num_pending).",
    ["stream", "consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "dmp_consumer_ack_pending_messages",
    "Messages delivered but not acknowledged yet (sampled num_ack_pending).",
    ["stream", "consumer"],
)

OUTBOX_UNPUBLISHED = Gauge(
    "dmp_outbox_unpublished_rows",
    "Outbox rows committed and not yet published (sampled).",
    ["service"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "dmp_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest unpublished outbox row, 0 when none (sampled).",
    ["service"],
)
OUTBOX_PUBLISHED = Counter(
    "dmp_outbox_published_events", "Outbox rows published to JetStream.", ["service"]
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "dmp_outbox_publish_failures",
    "Outbox rows whose publication failed (kept and retried).",
    ["service"],
)

DECISION_CACHE = Counter(
    "dmp_gateway_decision_cache_lookups",
    "Authorization decisions looked up in the gateway cache: hit or miss (Authorize called).",
    ["result"],
)
DECISION_CACHE_HIT = DECISION_CACHE.labels(result="hit")
DECISION_CACHE_MISS = DECISION_CACHE.labels(result="miss")

_OK = grpc.StatusCode.OK


class MethodMetrics:
    """Duration histogram and per-code counters of one method, bound on first use."""

    __slots__ = ("_codes", "_duration", "_method", "_service")

    def __init__(self, service: str, method: str) -> None:
        self._service = service
        self._method = method
        self._duration = RPC_DURATION.labels(service=service, method=method)
        self._codes: dict[grpc.StatusCode, tuple[Counter, Counter | None]] = {}

    def observe(self, code: grpc.StatusCode, seconds: float) -> None:
        self._duration.observe(seconds)
        counters = self._codes.get(code)
        if counters is None:
            labels = {"service": self._service, "method": self._method, "code": code.name}
            counters = (
                RPC_REQUESTS.labels(**labels),
                None if code is _OK else RPC_ERRORS.labels(**labels),
            )
            self._codes[code] = counters
        counters[0].inc()
        if counters[1] is not None:
            counters[1].inc()


class RpcMetrics:
    """RED metrics of one server; children are bound once per method and code."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._methods: dict[str, MethodMetrics] = {}

    def method(self, path: str) -> MethodMetrics:
        found = self._methods.get(path)
        if found is None:
            found = self._methods[path] = MethodMetrics(self._service, path)
        return found


@dataclass
class MetricsServer:
    """The Prometheus endpoint of a process (`GET /metrics` on `port`)."""

    port: int
    _server: WSGIServer
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(host: str, port: int) -> MetricsServer | None:
    """Start the endpoint on `host:port` (a thread); None when `port` is 0 (off)."""
    if port == 0:
        return None
    server, thread = start_http_server(port, addr=host)
    return MetricsServer(int(server.server_port), server, thread)
