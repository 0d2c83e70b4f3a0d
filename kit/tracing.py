"""OpenTelemetry set-up and W3C trace-context propagation over gRPC and NATS.

One trace follows a client call through the gateway, the service, the outbox
row (which stores the context at write time), the relay's publication, the
NATS headers and the consumers. With an exporter (OTLP, console) the process
installs an SDK tracer provider and records spans. Without one, recording
spans would cost every RPC for nothing, so server spans are "id only"
(`rpc_span`): a fresh span id in the caller's trace (or a new trace), not
recorded, still propagated and still in the logs.
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
from opentelemetry.trace.span import TraceState

_configured: TracerProvider | None = None
_random = random.Random()  # noqa: S311 - span ids need uniqueness, not secrecy (as the SDK's)
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"


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


def span_context_from_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> trace.SpanContext | None:
    """The caller's W3C span context in gRPC metadata (keys arrive lower-case), if valid.

    Parsed by hand: the generic propagator (regex, carrier getters) costs several
    times more, and every RPC of every process pays this.
    """
    parent = state = None
    for key, value in metadata or ():
        if key == TRACEPARENT:
            parent = value
        elif key == TRACESTATE:
            state = value
    if not isinstance(parent, str):
        return None
    return _parse_traceparent(parent, state if isinstance(state, str) else None)


def context_from_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> context.Context | None:
    """W3C context of incoming gRPC metadata; None without a valid one."""
    span_context = span_context_from_metadata(metadata)
    if span_context is None:
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


def _parse_traceparent(value: str, state: str | None) -> trace.SpanContext | None:
    parts = value.split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    version, trace_hex, span_hex, flags_hex = parts[:4]
    if version == "00" and len(parts) != 4:
        return None
    if len(trace_hex) != 32 or len(span_hex) != 16 or len(flags_hex) != 2:
        return None
    try:
        trace_id, span_id, flags = int(trace_hex, 16), int(span_hex, 16), int(flags_hex, 16)
        int(version, 16)
    except ValueError:
        return None
    if trace_id == 0 or span_id == 0:
        return None
    trace_state = None
    if state:
        trace_state = TraceState.from_header([state])
    return trace.SpanContext(
        trace_id,
        span_id,
        is_remote=True,
        trace_flags=trace.TraceFlags(flags & 0x01),
        trace_state=trace_state,
    )
