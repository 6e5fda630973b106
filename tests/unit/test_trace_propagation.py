"""runtime.tracing with an in-memory exporter: a call continues its caller's W3C trace or
starts one, passes its own span on, and costs nothing when tracing is off; the llama
predictor's stages become child spans with their times and token counts; and the flags that
turn tracing on."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.settings import parse_settings
from predictors.llama.request_trace import RequestTrace, record_stages
from runtime import tracing
from runtime.incoming import Incoming

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
PARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


def test_off_and_no_caller_context_is_nothing_at_all() -> None:
    assert not tracing.enabled()
    hop = tracing.begin("servemesh Predict", Incoming("r"))
    assert hop is tracing.NO_TRACE
    assert (hop.span, hop.trace_id, hop.headers()) == (None, "", ())
    hop.end("OK", {})  # a no-op
    hop.child("queue", 1, 2, {})


def test_off_passes_the_callers_context_on_unchanged() -> None:
    hop = tracing.begin("servemesh Predict", Incoming("r", PARENT, "vendor=1"))
    assert hop.span is None
    assert hop.trace_id == TRACE_ID  # the logs still join up
    assert dict(hop.headers()) == {"traceparent": PARENT, "tracestate": "vendor=1"}


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        f"00-{'0' * 32}-{CALLER_SPAN}-01",  # an all-zero trace id is invalid
        f"00-{TRACE_ID}-{CALLER_SPAN}",
        f"00-{TRACE_ID.upper()}-{CALLER_SPAN}-01",
        "x" * 10_000,
    ],
)
def test_a_malformed_traceparent_is_dropped(traceparent: str) -> None:
    assert tracing.begin("x", Incoming("r", traceparent)) is tracing.NO_TRACE


def test_on_the_span_is_a_child_of_the_callers(exporter: InMemorySpanExporter) -> None:
    hop = tracing.begin("servemesh Predict", Incoming("r", PARENT))
    assert hop.trace_id == TRACE_ID
    headers = dict(hop.headers())
    own = trace.format_span_id(hop.span.get_span_context().span_id)
    assert headers["traceparent"] == f"00-{TRACE_ID}-{own}-01"  # the next hop's parent: us
    hop.end("OK", {"rpc.method": "Predict", "servemesh.model": "m"})
    (span,) = exporter.get_finished_spans()
    assert span.name == "servemesh Predict"
    assert span.kind is trace.SpanKind.SERVER
    assert trace.format_span_id(span.parent.span_id) == CALLER_SPAN
    assert span.parent.is_remote
    assert span.attributes["rpc.method"] == "Predict"
    assert span.attributes["servemesh.model"] == "m"
    assert span.attributes["rpc.grpc.status_code"] == 0
    assert span.status.is_ok


def test_on_without_caller_context_a_trace_starts(exporter: InMemorySpanExporter) -> None:
    hop = tracing.begin("servemesh Predict", Incoming("r"))
    assert len(hop.trace_id) == 32 and hop.trace_id != TRACE_ID
    hop.end("NOT_FOUND", {})
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert span.attributes["rpc.grpc.status_code"] == 5
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description == "NOT_FOUND"


def test_an_unsampled_caller_is_respected(exporter: InMemorySpanExporter) -> None:
    hop = tracing.begin("x", Incoming("r", f"00-{TRACE_ID}-{CALLER_SPAN}-00"))
    hop.end("OK", {})
    assert not exporter.get_finished_spans()
    assert hop.trace_id == TRACE_ID
    assert dict(hop.headers())["traceparent"].endswith("-00")


def test_stages_become_child_spans(exporter: InMemorySpanExporter) -> None:
    hop = tracing.begin("llama Predict", Incoming("r", PARENT))
    stages = RequestTrace(
        submitted=1_000,
        admitted=3_000,
        first_token=7_000,
        finished=20_000,
        prompt_tokens=12,
        cached_tokens=4,
        generated_tokens=9,
    )
    record_stages(hop, stages, now=25_000)
    hop.end("OK", {})
    spans = {s.name: s for s in exporter.get_finished_spans()}
    request = spans["llama Predict"]
    for name in ("queue", "prefill", "decode"):
        assert spans[name].parent.span_id == request.context.span_id
        assert spans[name].context.trace_id == int(TRACE_ID, 16)
    assert (spans["queue"].start_time, spans["queue"].end_time) == (1_000, 3_000)
    assert (spans["prefill"].start_time, spans["prefill"].end_time) == (3_000, 7_000)
    assert (spans["decode"].start_time, spans["decode"].end_time) == (7_000, 20_000)
    assert spans["prefill"].attributes["gen_ai.usage.input_tokens"] == 12
    assert spans["prefill"].attributes["servemesh.cached_prompt_tokens"] == 4
    assert spans["decode"].attributes["gen_ai.usage.output_tokens"] == 9


def test_a_request_cancelled_in_the_queue_has_only_a_queue_span(
    exporter: InMemorySpanExporter,
) -> None:
    hop = tracing.begin("llama Predict", Incoming("r"))
    record_stages(hop, RequestTrace(submitted=1_000), now=5_000)
    hop.end("CANCELLED", {})
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"queue", "llama Predict"}
    assert spans["queue"].end_time == 5_000


def test_tracing_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SERVEMESH_GATEWAY_OTLP_ENDPOINT",
        "SERVEMESH_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "SERVEMESH_GATEWAY_LOG_FORMAT",
        "SERVEMESH_LOG_FORMAT",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = parse_settings([])
    assert settings.observability.otlp_endpoint is None
    assert settings.observability.log_format == "text"
    tracing.configure_tracing("servemesh-gateway", settings.observability.otlp_endpoint)
    assert not tracing.enabled()


def test_the_endpoint_comes_from_a_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVEMESH_GATEWAY_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("SERVEMESH_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert parse_settings([]).observability.otlp_endpoint == "http://collector:4317"
    monkeypatch.setenv("SERVEMESH_OTLP_ENDPOINT", "http://mesh:4317")
    assert parse_settings([]).observability.otlp_endpoint == "http://mesh:4317"
    # The program's own variable, then the flag, win; "off" turns it off.
    monkeypatch.setenv("SERVEMESH_GATEWAY_OTLP_ENDPOINT", "off")
    assert parse_settings([]).observability.otlp_endpoint is None
    flag = parse_settings(["--otlp-endpoint", "http://flag:4317", "--log-format", "json"])
    assert flag.observability.otlp_endpoint == "http://flag:4317"
    assert flag.observability.log_format == "json"


def test_a_bad_log_format_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVEMESH_LOG_FORMAT", "xml")
    monkeypatch.delenv("SERVEMESH_GATEWAY_LOG_FORMAT", raising=False)
    with pytest.raises(SystemExit):
        parse_settings([])


def test_a_callers_bad_tracestate_cannot_flood_the_log(caplog: pytest.LogCaptureFixture) -> None:
    tracing.configure_tracing("servemesh-gateway", None)  # tames the warnings, tracing off
    with caplog.at_level(logging.WARNING):
        for n in range(100):
            hop = tracing.begin("x", Incoming("r", PARENT, f"BAD STATE {n} " + "x" * 400))
            assert hop.trace_id == TRACE_ID  # the traceparent still holds
            assert "tracestate" not in dict(hop.headers())  # the bad state is not passed on
            tracing.begin("x", Incoming("r", PARENT, "y" * 1000))  # too long
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) <= 2, messages  # one per logger and interval, not one per call
    assert not [m for m in messages if "BAD STATE" in m or "yyy" in m]
