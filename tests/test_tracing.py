"""OpenTelemetry traces, request ids and JSON logs across real processes.

A llama predictor and a gateway export their spans over OTLP/gRPC to a trace collector that
this test runs in its own process (an in-memory exporter across processes). One call with a
`traceparent` the test chose must give one trace: the gateway's span a child of the caller's,
the predictor's a child of the gateway's, and the predictor's queue, prefill and decode
stages under it with their token counts. The call's request id comes back in its metadata and
in the SDK's result, and marks the JSON log lines of both processes. A gateway with the
exporter off records nothing but still passes the caller's context on; and the TorchServe
backend gets the same context, checked against an in-process stand-in for TorchServe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import httpx2
import pytest
from google.protobuf import empty_pb2
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.backends import make_backend
from gateway.config import BackendConfig, ModelConfig, RequestLimits
from gateway.dispatch import Dispatcher
from gateway.router import Route, Router
from runtime.incoming import Incoming
from servemesh import Client, InvalidArgument, NotFound
from servemesh.v1 import prediction_service_pb2 as pb
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc
from tests.servers import MODEL, ServerProcess, gateway, llama_predictor, mesh_config, wait_for
from torchserve_grpc import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc

EXPORT_WAIT_S = 20.0
GATEWAY, LLAMA = "servemesh-gateway", "servemesh-llama"
# A text-format log line (runtime.logs.TEXT_FORMAT): none may be left with --log-format json.
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    attributes: dict[str, Any]


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace collector that keeps every span it is sent."""

    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    self._spans.extend(
                        Span(
                            resource["service.name"],
                            s.name,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            _attributes(s.attributes),
                        )
                        for s in scope_spans.spans
                    )
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [s for s in self._spans if s.trace_id == trace_id]

    def wait_for_trace(self, trace_id: str, names: set[str]) -> dict[str, Span]:
        """The spans of one trace by name, once all of `names` have arrived."""
        wait_for(
            lambda: names <= {s.name for s in self.trace(trace_id)},
            EXPORT_WAIT_S,
            f"spans {sorted(names)} of trace {trace_id}",
        )
        spans = self.trace(trace_id)
        assert len(spans) == len({s.name for s in spans}), f"a span twice: {spans}"
        return {s.name: s for s in spans}


def _attributes(pairs: Any) -> dict[str, Any]:
    values = {}
    for pair in pairs:
        value = pair.value
        values[pair.key] = getattr(value, value.WhichOneof("value"))
    return values


@dataclass(frozen=True)
class TracedMesh:
    collector: Collector
    predictor: ServerProcess
    gateway: ServerProcess
    untraced_gateway: ServerProcess  # --otlp-endpoint off, in front of the same predictor


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedMesh]:
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    endpoint = f"http://127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    logs = tmp_path_factory.mktemp("tracing")
    json_logs = ["--log-format", "json", "--log-level", "debug"]
    predictor, _ = llama_predictor(logs, "llama", *json_logs, "--otlp-endpoint", endpoint)
    front = gateway(logs, mesh_config(predictor.address))
    front.command += [*json_logs, "--otlp-endpoint", endpoint]
    untraced = gateway(logs, mesh_config(predictor.address), name="gateway-untraced")
    untraced.command += [*json_logs, "--otlp-endpoint", "off"]
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export within 0.1 s, not 5 s
            # The flag wins over OpenTelemetry's own variable, which points at the collector.
            env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            predictor.start()
            front.start(needs=(predictor,))
            untraced.start(needs=(predictor,))
        yield TracedMesh(collector, predictor, front, untraced)
    finally:
        untraced.stop()
        front.stop()
        predictor.stop()
        server.stop(0)


def traceparent() -> tuple[str, str, str]:
    """A caller's own trace context: (traceparent, trace id, span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def json_lines(process: ServerProcess) -> list[dict[str, Any]]:
    """The process's log lines that its logging wrote, all of which must be JSON."""
    lines = process.log_path.read_text(errors="replace").splitlines()
    assert not [line for line in lines if TEXT_LINE.match(line)], "a text line in a JSON log"
    return [json.loads(line) for line in lines if line.startswith("{")]


def lines_of(process: ServerProcess, request_id: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(process) if line.get("request_id") == request_id]


def check_one_trace(
    collector: Collector, trace_id: str, caller_span: str, method: str
) -> dict[str, Span]:
    """The gateway's span under the caller's, the predictor's under the gateway's, and the
    predictor's stages under its own, all in the caller's trace."""
    gateway_span, llama_span = f"servemesh {method}", f"llama {method}"
    spans = collector.wait_for_trace(
        trace_id, {gateway_span, llama_span, "queue", "prefill", "decode"}
    )
    front, back = spans[gateway_span], spans[llama_span]
    assert (front.service, back.service) == (GATEWAY, LLAMA)
    assert front.parent_id == caller_span
    assert back.parent_id == front.span_id
    for stage in ("queue", "prefill", "decode"):
        assert spans[stage].parent_id == back.span_id
        assert spans[stage].service == LLAMA
    assert front.attributes["servemesh.model"] == MODEL
    assert front.attributes["servemesh.backend"] == "llama"
    assert front.attributes["servemesh.protocol"] == "servemesh"
    assert front.attributes["rpc.method"] == method
    assert front.attributes["rpc.grpc.status_code"] == 0
    assert spans["prefill"].attributes["gen_ai.usage.input_tokens"] > 0
    assert spans["decode"].attributes["gen_ai.usage.output_tokens"] > 0
    assert (
        back.attributes["gen_ai.usage.output_tokens"]
        == (spans["decode"].attributes["gen_ai.usage.output_tokens"])
    )
    return spans


def test_a_unary_call_is_one_trace_across_both_processes(traced: TracedMesh) -> None:
    parent, trace_id, caller_span = traceparent()
    request_id = "trace-unary-1"
    request = pb.PredictRequest(model=MODEL)
    request.text_generation.prompt = "The capital of Japan is"
    request.text_generation.parameters.max_tokens = 4
    with grpc.insecure_channel(traced.gateway.address) as channel:
        response, call = pb_grpc.PredictionServiceStub(channel).Predict.with_call(
            request, metadata=(("traceparent", parent), ("x-request-id", request_id)), timeout=60
        )
    assert dict(call.trailing_metadata())["x-request-id"] == request_id
    assert response.request_id == request_id  # the body had none: it takes the call's
    spans = check_one_trace(traced.collector, trace_id, caller_span, "Predict")
    assert spans["servemesh Predict"].attributes["servemesh.request_id"] == request_id
    assert spans["llama Predict"].attributes["servemesh.request_id"] == request_id
    # Both processes logged the call under its ids, the predictor's batching thread too.
    wait_for(lambda: lines_of(traced.predictor, request_id), 5, "the predictor's lines")
    for process in (traced.gateway, traced.predictor):
        lines = lines_of(process, request_id)
        assert lines and all(line["trace_id"] == trace_id for line in lines), process.name
    loggers = {line["logger"] for line in lines_of(traced.predictor, request_id)}
    assert {"predictors.llama.engine", "predictors.llama.servicer"} <= loggers


def test_a_stream_is_one_trace_across_both_processes(traced: TracedMesh) -> None:
    parent, trace_id, caller_span = traceparent()
    request_id = "trace-stream-1"
    request = pb.PredictStreamRequest(model=MODEL)
    request.text_generation.prompt = "Water boils at a temperature of"
    request.text_generation.parameters.max_tokens = 6
    with grpc.insecure_channel(traced.gateway.address) as channel:
        call = pb_grpc.PredictionServiceStub(channel).PredictStream(
            request, metadata=(("traceparent", parent), ("x-request-id", request_id)), timeout=60
        )
        # A stream's caller has the id before the first message.
        assert dict(call.initial_metadata())["x-request-id"] == request_id
        messages = list(call)
    assert messages[-1].usage.completion_tokens > 0
    spans = check_one_trace(traced.collector, trace_id, caller_span, "PredictStream")
    assert spans["decode"].attributes["gen_ai.usage.output_tokens"] == (
        messages[-1].usage.completion_tokens
    )
    wait_for(lambda: lines_of(traced.predictor, request_id), 5, "the predictor's lines")
    assert all(line["trace_id"] == trace_id for line in lines_of(traced.gateway, request_id))


def test_without_traceparent_the_gateway_starts_the_trace(traced: TracedMesh) -> None:
    with Client(traced.gateway.address) as client:
        result = client.predict(MODEL, prompt="1, 2, 3, 4,", max_tokens=2)
    # The SDK gives the id the gateway made up, which its log lines carry.
    assert re.fullmatch(r"[0-9a-f]{32}", result.request_id)
    wait_for(lambda: lines_of(traced.gateway, result.request_id), 5, "the gateway's line")
    (trace_id,) = {line["trace_id"] for line in lines_of(traced.gateway, result.request_id)}
    spans = traced.collector.wait_for_trace(trace_id, {"servemesh Predict", "llama Predict"})
    assert spans["servemesh Predict"].parent_id == ""
    assert spans["llama Predict"].parent_id == spans["servemesh Predict"].span_id


def test_the_sdk_gives_the_request_id_of_results_and_errors(traced: TracedMesh) -> None:
    with Client(traced.gateway.address) as client:
        result = client.predict(MODEL, prompt="Hi", max_tokens=2, request_id="sdk-unary")
        chunks = list(client.predict_stream(MODEL, prompt="Hi", max_tokens=2, request_id="sdk-s"))
        with pytest.raises(NotFound) as caught:
            client.predict("no-such-model", "hi")
        # Refused by the predictor, passed through the gateway unchanged.
        with pytest.raises(InvalidArgument) as refused:
            client.predict(MODEL, prompt="Hi", max_tokens=5000, request_id="sdk-refused")
    assert result.request_id == "sdk-unary"
    assert {c.request_id for c in chunks} == {"sdk-s"}
    # The id does not push the error's own details out of the trailing metadata.
    assert (refused.value.request_id, refused.value.reason) == ("sdk-refused", "INVALID_PARAMETER")
    assert refused.value.metadata["field"] == "text_generation.parameters.max_tokens"
    assert caught.value.reason == "MODEL_NOT_FOUND"
    failed = caught.value.request_id
    assert re.fullmatch(r"[0-9a-f]{32}", failed)
    wait_for(lambda: lines_of(traced.gateway, failed), 5, "the failed call's line")
    assert "NOT_FOUND" in lines_of(traced.gateway, failed)[0]["message"]


def test_a_callers_bad_request_id_is_replaced(traced: TracedMesh) -> None:
    request = pb.PredictRequest(model="no-such-model")
    with (
        grpc.insecure_channel(traced.gateway.address) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        pb_grpc.PredictionServiceStub(channel).Predict(
            request, metadata=(("x-request-id", "x" * 200),), timeout=10
        )
    returned = dict(caught.value.trailing_metadata())["x-request-id"]
    assert returned != "x" * 200 and re.fullmatch(r"[0-9a-f]{32}", returned)


def test_the_http_door_traces_and_returns_the_request_id(traced: TracedMesh) -> None:
    parent, trace_id, caller_span = traceparent()
    url = f"http://127.0.0.1:{traced.gateway.http_port}/v1/completions"
    headers = {"traceparent": parent, "x-request-id": "http-1"}
    body = {"model": MODEL, "prompt": "My favourite fruit is", "max_tokens": 3}
    answer = httpx2.post(url, json=body, headers=headers, timeout=60)
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "http-1"
    assert answer.json()["id"] == "cmpl-http-1"
    spans = traced.collector.wait_for_trace(trace_id, {"openai completions", "llama Predict"})
    front = spans["openai completions"]
    assert front.parent_id == caller_span
    assert front.attributes["servemesh.protocol"] == "openai"
    assert spans["llama Predict"].parent_id == front.span_id
    refused = httpx2.post(url, json={**body, "model": "no-such-model"}, timeout=10)
    assert refused.status_code == 404
    assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["x-request-id"])
    nowhere = httpx2.get(url.replace("completions", "nothing"), headers=headers, timeout=10)
    assert (nowhere.status_code, nowhere.headers["x-request-id"]) == (404, "http-1")


def test_with_the_exporter_off_nothing_is_recorded_but_the_context_passes(
    traced: TracedMesh,
) -> None:
    parent, trace_id, caller_span = traceparent()
    with grpc.insecure_channel(traced.untraced_gateway.address) as channel:
        request = pb.PredictRequest(model=MODEL)
        request.text_generation.prompt = "The first man on the moon was"
        request.text_generation.parameters.max_tokens = 2
        pb_grpc.PredictionServiceStub(channel).Predict(
            request, metadata=(("traceparent", parent), ("x-request-id", "untraced-1")), timeout=60
        )
    spans = traced.collector.wait_for_trace(trace_id, {"llama Predict", "decode"})
    # The predictor's span hangs under the caller's own: the gateway recorded no span and
    # passed the caller's context on as it came. Its span, had it made one, would have been
    # sent with the predictor's, within a few of the 0.1 s batch delays.
    assert spans["llama Predict"].parent_id == caller_span
    time.sleep(0.5)
    assert not [s for s in traced.collector.trace(trace_id) if s.service == GATEWAY]
    # Its log lines still carry the caller's trace id.
    wait_for(lambda: lines_of(traced.untraced_gateway, "untraced-1"), 5, "the gateway's line")
    assert lines_of(traced.untraced_gateway, "untraced-1")[0]["trace_id"] == trace_id
    # And nothing of it started: its log says so at start-up, the traced one's does not.
    started = [line["message"] for line in json_lines(traced.untraced_gateway)]
    assert not [m for m in started if m.startswith("tracing:")]
    assert [m for m in (line["message"] for line in json_lines(traced.gateway)) if "tracing:" in m]


# -- The TorchServe backend, against an in-process stand-in for TorchServe's inference API ----


class FakeTorchServe(
    inference_pb2_grpc.InferenceAPIsServiceServicer,
    management_pb2_grpc.ManagementAPIsServiceServicer,
):
    """TorchServe's inference and management APIs, healthy with one model, "scorer", whose
    Predictions answer a fixed JSON output; it keeps each prediction's metadata."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    async def Ping(
        self, request: empty_pb2.Empty, context: grpc.aio.ServicerContext
    ) -> inference_pb2.TorchServeHealthResponse:
        return inference_pb2.TorchServeHealthResponse(health=json.dumps({"status": "Healthy"}))

    async def Predictions(
        self, request: inference_pb2.PredictionsRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.PredictionResponse:
        self.metadata.append(dict(context.invocation_metadata()))
        return inference_pb2.PredictionResponse(prediction=json.dumps({"score": 0.5}).encode())

    async def ListModels(
        self, request: management_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> management_pb2.ManagementResponse:
        return management_pb2.ManagementResponse(
            msg=json.dumps({"models": [{"modelName": "scorer"}]})
        )

    async def DescribeModel(
        self, request: management_pb2.DescribeModelRequest, context: grpc.aio.ServicerContext
    ) -> management_pb2.ManagementResponse:
        return management_pb2.ManagementResponse(
            msg=json.dumps([{"workers": [{"status": "READY"}]}])
        )


@pytest.fixture
async def torchserve_dispatcher() -> AsyncIterator[tuple[Dispatcher, FakeTorchServe]]:
    """A dispatcher whose one model, "scorer", is on a TorchServe backend (the fake), once
    that backend serves."""
    server = grpc.aio.server()
    fake = FakeTorchServe()
    inference_pb2_grpc.add_InferenceAPIsServiceServicer_to_server(fake, server)
    management_pb2_grpc.add_ManagementAPIsServiceServicer_to_server(fake, server)
    address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    config = BackendConfig("ts", "torchserve", (address,), {"management_target": address})
    backend = make_backend(config, [ModelConfig("scorer", "ts", "scorer", {})])
    async with asyncio.timeout(10), contextlib.aclosing(backend.watch_health()) as health:
        async for serving in health:
            if serving:
                break
    yield Dispatcher(Router([Route("scorer", backend, "scorer")]), RequestLimits()), fake
    await backend.close()
    await server.stop(0)


async def test_a_torchserve_call_is_traced_and_carries_the_context(
    torchserve_dispatcher: tuple[Dispatcher, FakeTorchServe], exporter: InMemorySpanExporter
) -> None:
    dispatcher, fake = torchserve_dispatcher
    parent, trace_id, caller_span = traceparent()
    request = pb.PredictRequest(model="scorer")
    request.inference.inputs["text"].text = "hello"
    response = await dispatcher.predict(request, 10, incoming=Incoming("ts-call-1", parent))
    assert response.request_id == "ts-call-1" and response.model == "scorer"
    (span,) = exporter.get_finished_spans()
    assert span.name == "servemesh Predict"
    assert trace.format_trace_id(span.context.trace_id) == trace_id
    assert trace.format_span_id(span.parent.span_id) == caller_span
    assert span.attributes["servemesh.model"] == "scorer"
    assert span.attributes["servemesh.backend"] == "ts"
    assert span.attributes["rpc.grpc.status_code"] == 0
    (sent,) = fake.metadata
    own = trace.format_span_id(span.context.span_id)
    assert sent["traceparent"] == f"00-{trace_id}-{own}-01"  # TorchServe's parent: the gateway
    assert sent["x-request-id"] == "ts-call-1"


async def test_a_failed_call_is_traced_with_its_status(
    torchserve_dispatcher: tuple[Dispatcher, FakeTorchServe], exporter: InMemorySpanExporter
) -> None:
    dispatcher, _ = torchserve_dispatcher
    with pytest.raises(NotFound):
        await dispatcher.predict(pb.PredictRequest(model="nothing"), 10)
    (span,) = exporter.get_finished_spans()
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert span.attributes["servemesh.model"] == ""
    assert span.status.status_code is trace.StatusCode.ERROR
