"""OpenTelemetry tracing for a servemesh program: off unless an OTLP endpoint is given; then a
span per call on each server, continued from the caller's W3C trace context and passed on.

Off, a call costs nothing here unless its caller sent a `traceparent`: that one is still
passed on unchanged (W3C's rule for a hop that records nothing), and its trace id still marks
the call's log lines, so logs join up across servers either way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from runtime.incoming import TRACEPARENT, TRACESTATE, Incoming
from runtime.log_limit import CallerInputFilter

log = logging.getLogger(__name__)
Metadata = tuple[tuple[str, str], ...]
Attributes = Mapping[str, Any]

_PROPAGATOR = TraceContextTextMapPropagator()
_ROOT = Context()  # a span started here begins a new trace
# The program's tracer; None while tracing is off. A module's own rather than OpenTelemetry's
# global one, which can be set only once a process: tests swap it (`use_provider`).
_tracer: trace.Tracer | None = None
# Where OpenTelemetry warns of a caller's malformed traceparent or tracestate, per call.
CALLER_INPUT_LOGGERS = ("opentelemetry.trace.propagation.tracecontext", "opentelemetry.trace.span")


def configure_tracing(service_name: str, endpoint: str | None) -> None:
    """Exports this program's spans over OTLP/gRPC to `endpoint` (http://HOST:PORT for
    plaintext, https:// for TLS), in batches off the serving path; None leaves tracing off.
    OTEL_SERVICE_NAME, where set, names the service instead of `service_name`."""
    # A caller's context is read even with tracing off, so its warnings are tamed either way.
    for name in CALLER_INPUT_LOGGERS:
        logging.getLogger(name).addFilter(
            CallerInputFilter("a caller sent a malformed W3C trace context; it was dropped")
        )
    if not endpoint:
        use_provider(None)
        return
    # Imported only when tracing is on: a program that does not trace never loads them.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    use_provider(provider)  # the provider flushes what is left at exit
    log.info("tracing: spans of %s go to %s over OTLP", name, endpoint)


def use_provider(provider: trace.TracerProvider | None) -> None:
    """Traces with `provider` from now on (an SDK TracerProvider); None turns tracing off."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer("servemesh")


def enabled() -> bool:
    return _tracer is not None


class Hop:
    """One server's part of a call's trace: its span (None when tracing is off here), the
    context that the call's own calls continue, and the trace id for the call's log lines."""

    __slots__ = ("context", "span", "trace_id")

    def __init__(self, span: trace.Span | None, context: Context | None, trace_id: str) -> None:
        self.span, self.context, self.trace_id = span, context, trace_id

    def headers(self) -> Metadata:
        """`traceparent` (and `tracestate`) for a call this hop makes to another server."""
        if self.context is None:
            return ()
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=self.context)
        return tuple((key, carrier[key]) for key in (TRACEPARENT, TRACESTATE) if key in carrier)

    def child(self, name: str, start_ns: int, end_ns: int, attributes: Attributes) -> None:
        """A finished span under this hop's, from `start_ns` to `end_ns` (time.time_ns()):
        work that another thread timed, recorded once it is over."""
        if self.span is None or _tracer is None or not self.span.is_recording():
            return  # off, or a trace its caller chose not to sample
        span = _tracer.start_span(
            name, context=self.context, attributes=attributes, start_time=start_ns
        )
        span.end(end_time=max(end_ns, start_ns))

    def end(self, code: str, attributes: Attributes) -> None:
        """Ends the span with the call's status code name ("OK", "NOT_FOUND", ...) and its
        `attributes`, all set at the end: the call knows them all only then. A caller may
        skip building them when `span` is None."""
        if self.span is None:
            return
        span = self.span
        span.set_attributes(attributes)
        status = grpc.StatusCode[code] if code in grpc.StatusCode.__members__ else None
        if status is not None:
            span.set_attribute("rpc.grpc.status_code", status.value[0])
        if code != "OK":
            span.set_status(trace.StatusCode.ERROR, code)
        span.end()


NO_TRACE = Hop(None, None, "")  # off, and no trace context from the caller


def begin(name: str, incoming: Incoming) -> Hop:
    """This server's span for a call (kind SERVER), a child of the caller's span when it sent
    a valid `traceparent`, else the root of a new trace."""
    if not incoming.traceparent:
        if _tracer is None:
            return NO_TRACE
        parent = _ROOT
    else:
        carrier = {TRACEPARENT: incoming.traceparent}
        if incoming.tracestate:
            carrier[TRACESTATE] = incoming.tracestate
        parent = _PROPAGATOR.extract(carrier)  # empty when malformed: a new trace, then
        if _tracer is None:
            caller = trace.get_current_span(parent).get_span_context()
            if not caller.is_valid:
                return NO_TRACE
            return Hop(None, parent, trace.format_trace_id(caller.trace_id))
    span = _tracer.start_span(name, context=parent, kind=trace.SpanKind.SERVER)
    context = trace.set_span_in_context(span, parent)
    return Hop(span, context, trace.format_trace_id(span.get_span_context().trace_id))
