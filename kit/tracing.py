"""OpenTelemetry set-up and W3C trace-context propagation over gRPC and NATS.

One trace follows a client call through the gateway, the service, the outbox
row (which stores the context at write time), the relay's publication, the
NATS headers and the consumers. Every process installs an SDK tracer provider,
even without an exporter, so spans get real ids and logs can carry them; the
exporter (OTLP, console) is chosen by settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_configured: TracerProvider | None = None
_w3c = TraceContextTextMapPropagator()
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"


def configure_tracing(
    service: str,
    exporter: str = "none",
    *,
    otlp_endpoint: str = "",
    sample_ratio: float = 1.0,
) -> TracerProvider:
    """Install the process's tracer provider once; a second call returns the first one.

    `exporter`: none, console or otlp; a non-empty `otlp_endpoint` implies otlp.
    """
    global _configured  # noqa: PLW0603 - one provider per process, by OTel design
    if _configured is not None:
        return _configured
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"dmp-{service}"}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    if exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp" or otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint or None  # None: OTEL_EXPORTER_OTLP_ENDPOINT or localhost:4317
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    _configured = provider
    return provider


def add_span_processor(processor: SpanProcessor, service: str = "test") -> TracerProvider:
    """Attach a processor (tests: an in-memory exporter) to the process's provider."""
    provider = configure_tracing(service)
    provider.add_span_processor(processor)
    return provider


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_headers() -> dict[str, str]:
    """Current trace context as W3C headers (for NATS messages and outbox rows)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def traceparent() -> str | None:
    """The W3C `traceparent` of the current span, formatted directly (the gateway's hot path)."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def extract_context(
    headers: Mapping[str, str] | Iterable[tuple[str, str | bytes]],
) -> context.Context:
    """Trace context from NATS headers or gRPC metadata pairs."""
    if isinstance(headers, Mapping):
        carrier = {k.lower(): v for k, v in headers.items()}
    else:
        carrier = {k.lower(): v for k, v in headers if isinstance(v, str)}
    return propagate.extract(carrier)


def context_from_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> context.Context | None:
    """W3C context of incoming gRPC metadata (keys arrive lower-case); None without one."""
    parent = state = None
    for key, value in metadata or ():
        if key == TRACEPARENT:
            parent = value
        elif key == TRACESTATE:
            state = value
    if not isinstance(parent, str):
        return None
    carrier = {TRACEPARENT: parent}
    if isinstance(state, str):
        carrier[TRACESTATE] = state
    return _w3c.extract(carrier)
