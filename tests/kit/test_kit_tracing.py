"""kit.tracing: W3C context in and out of gRPC metadata through OpenTelemetry's propagator."""

from __future__ import annotations

import pytest
from opentelemetry import context, trace

from kit import tracing

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


def test_a_valid_traceparent_and_its_tracestate_are_read() -> None:
    metadata = (
        ("user-agent", "grpc-python"),
        ("traceparent", f"00-{TRACE}-{SPAN}-01"),
        ("tracestate", "vendor=abc"),
    )
    parent = tracing.span_context_from_metadata(metadata)
    assert parent is not None
    assert (parent.trace_id, parent.span_id) == (int(TRACE, 16), int(SPAN, 16))
    assert parent.is_remote
    assert parent.trace_flags.sampled
    assert parent.trace_state.get("vendor") == "abc"


@pytest.mark.parametrize(
    "value",
    [
        f"00-{'0' * 32}-{SPAN}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"ff-{TRACE}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-01-extra",
        f"00-{TRACE[:-1]}-{SPAN}-01",
        "garbage",
        "",
    ],
)
def test_an_invalid_traceparent_is_no_parent(value: str) -> None:
    assert tracing.span_context_from_metadata((("traceparent", value),)) is None


def test_no_or_binary_traceparent_is_no_parent() -> None:
    assert tracing.span_context_from_metadata(None) is None
    assert tracing.span_context_from_metadata((("traceparent", b"00-x"),)) is None


def test_traceparent_and_trace_id_of_the_current_span() -> None:
    assert tracing.traceparent() is None
    assert tracing.trace_id() == ""
    parent = tracing.span_context_from_metadata((("traceparent", f"00-{TRACE}-{SPAN}-01"),))
    span = tracing.id_only_span(parent)
    token = context.attach(trace.set_span_in_context(span))
    try:
        own = span.get_span_context()
        assert tracing.traceparent() == f"00-{TRACE}-{own.span_id:016x}-01"
        assert tracing.trace_id() == TRACE
    finally:
        context.detach(token)
