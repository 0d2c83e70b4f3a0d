"""OpenTelemetry set-up and W3C trace-context propagation over gRPC and NATS.

One trace follows a client call through the gateway, the service, the outbox
row (which stores the context at write time), the relay's publication, the
NATS headers and the consumers. With an exporter (OTLP, console) the process
installs an SDK tracer provider and records spans. Without one, recording
spans would cost every RPC for nothing, so server spans are "id only"
(`rpc_span`): a fresh span id in the caller's trace (or a new trace), not
recorded, still propagated and still in the logs.

W3C headers are read and written by OpenTelemetry's propagator
(`TraceContextTextMapPropagator`), not by hand. The previous hand parser was kept
"for speed"; measured before replacing it (2 shared cores under load 5-14; min of
5 rounds of 200 000 calls): reading a traceparent from gRPC metadata costs 4.9 µs
with the propagator, 2.0 µs by hand; writing one 1.8 µs vs 1.4 µs; the whole
server hook of bench/observability_overhead.py (no exporter, min) 10-17 µs vs
7 µs, against its 100 µs goal. A loopback echo call costs about 1 000 µs and the
bench's end-to-end ratio varied from 0.73 to 1.13 between runs of either version:
about 3 µs per RPC is below what matters, so the library (complete W3C rules:
versions, invalid ids, tracestate limits) does the parsing.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_configured: TracerProvider | None = None
_random = random.Random()  # noqa: S311 - span ids need uniqueness, not secrecy (as the SDK's)
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_W3C_KEYS = frozenset({TRACEPARENT, TRACESTATE})
_W3C = TraceContextTextMapPropagator()


def configure_tracing(
    service: str,
    exporter: str = "none",
    *,
    otlp_endpoint: str = "",
    sample_ratio: float = 1.0,
) -> TracerProvider | None:
    """Install the process's recording provider when an exporter is asked for (else None).

    `exporter`: none, console or otlp; a non-empty `otlp_endpoint` implies otlp.
    """
    if exporter == "console":
        processor: SpanProcessor = SimpleSpanProcessor(ConsoleSpanExporter())
    elif exporter == "otlp" or otlp_endpoint:
        # Imported only when OTLP export is on: it costs every process start ~0.1-0.2 s.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        endpoint = otlp_endpoint or None  # None: OTEL_EXPORTER_OTLP_ENDPOINT or localhost:4317
        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
    else:
        return _configured
    return add_span_processor(processor, service, sample_ratio)


def add_span_processor(
    processor: SpanProcessor, service: str = "test", sample_ratio: float = 1.0
) -> TracerProvider:
    """Record spans into `processor` (tests: an in-memory exporter); installs the provider once."""
    global _configured  # noqa: PLW0603 - one provider per process, by OTel design
    if _configured is None:
        _configured = TracerProvider(
            resource=Resource.create({"service.name": f"dmp-{service}"}),
            # ALWAYS_ON unless a ratio is asked: the ratio sampler costs on every root span.
            sampler=ParentBased(
                ALWAYS_ON if sample_ratio >= 1 else TraceIdRatioBased(sample_ratio)
            ),
        )
        trace.set_tracer_provider(_configured)
    _configured.add_span_processor(processor)
    return _configured


def recording() -> bool:
    """Whether spans are recorded (an exporter or a test processor is installed)."""
    return _configured is not None


def id_only_span(parent: trace.SpanContext | None) -> trace.Span:
    """A span that is only ids: child of `parent` (or a new sampled trace), never recorded."""
    if parent is None:
        return trace.NonRecordingSpan(
            trace.SpanContext(
                _random.getrandbits(128),
                _random.getrandbits(64),
                is_remote=False,
                trace_flags=_SAMPLED,
            )
        )
    return trace.NonRecordingSpan(
        trace.SpanContext(
            parent.trace_id,
            _random.getrandbits(64),
            is_remote=False,
            trace_flags=parent.trace_flags,
            trace_state=parent.trace_state,
        )
    )


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_headers() -> dict[str, str]:
    """Current trace context as W3C headers (for NATS messages and outbox rows)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def traceparent() -> str | None:
    """The W3C `traceparent` of the current span (the gateway sends it upstream)."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get(TRACEPARENT)


def trace_id() -> str:
    """The current trace id in hex, as logs and ErrorInfo metadata show it ("" without one)."""
    span_context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else ""


def extract_context(
    headers: Mapping[str, str] | Iterable[tuple[str, str | bytes]],
) -> context.Context:
    """Trace context from NATS headers or gRPC metadata pairs."""
    if isinstance(headers, Mapping):
        carrier = {k.lower(): v for k, v in headers.items()}
    else:
        carrier = {k.lower(): v for k, v in headers if isinstance(v, str)}
    return propagate.extract(carrier)


def span_context_from_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> trace.SpanContext | None:
    """The caller's W3C span context in gRPC metadata (keys arrive lower-case), if valid."""
    carrier = {
        key: value for key, value in metadata or () if key in _W3C_KEYS and isinstance(value, str)
    }
    if TRACEPARENT not in carrier:
        return None
    span_context = trace.get_current_span(_W3C.extract(carrier)).get_span_context()
    return span_context if span_context.is_valid else None
