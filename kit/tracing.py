"""OpenTelemetry set-up and W3C trace-context propagation over gRPC and NATS."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

_configured: TracerProvider | None = None


def configure_tracing(service: str, exporter: str = "none") -> TracerProvider:
    """Install one tracer provider per process; exporters are chosen by settings."""
    global _configured  # noqa: PLW0603 - one provider per process, by OTel design
    if _configured is not None:
        return _configured
    provider = TracerProvider(resource=Resource.create({"service.name": f"dmp-{service}"}))
    chosen: SpanExporter | None = None
    if exporter == "console":
        chosen = ConsoleSpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(chosen))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = provider
    return provider


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_headers() -> dict[str, str]:
    """Current trace context as W3C headers (for NATS messages and outbox rows)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_context(
    headers: Mapping[str, str] | Iterable[tuple[str, str | bytes]],
) -> context.Context:
    """Trace context from NATS headers or gRPC metadata pairs."""
    if isinstance(headers, Mapping):
        carrier = {k.lower(): v for k, v in headers.items()}
    else:
        carrier = {k.lower(): v for k, v in headers if isinstance(v, str)}
    return propagate.extract(carrier)
