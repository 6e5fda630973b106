"""Session-wide real servers: one llama predictor and one gateway in front of it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runtime import tracing
from servemesh import Client
from tests.servers import (
    Metrics,
    ServerProcess,
    TorchServe,
    gateway,
    llama_predictor,
    mesh_config,
    torchserve,
)

# In CI (the CI variable set, to any value, as every CI service sets it) property tests draw
# the same examples on every run, so a red build is reproducible and never the luck of the
# draw; elsewhere the default profile explores. Hypothesis has a built-in "ci" profile that it
# loads on CI by itself; this one is the same, written here so it is not left to the version.
# Tests with their own settings(derandomize=...) keep theirs.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,  # CI machines are slow and shared: a slow example is not a failure there
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
if "CI" in os.environ:
    settings.load_profile("ci")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, into memory, for one test."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.use_provider(provider)
    yield spans
    tracing.use_provider(None)


@dataclass(frozen=True)
class Mesh:
    predictor: ServerProcess
    metrics: Metrics
    torchserve: TorchServe
    gateway: ServerProcess


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-requests",
        type=int,
        default=2000,
        help="requests in the soak test (10000 for the long version)",
    )
    parser.addoption(
        "--soak-unary-calls",
        type=int,
        default=100_000,
        help="unary calls in the gateway memory soak (after a tenth as many to warm up)",
    )


@pytest.fixture(scope="session")
def soak_unary_calls(request: pytest.FixtureRequest) -> int:
    return request.config.getoption("--soak-unary-calls")


@pytest.fixture(scope="session")
def soak_requests(request: pytest.FixtureRequest) -> int:
    return request.config.getoption("--soak-requests")


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The whole mesh, as `make up` runs it, on free ports."""
    logs = tmp_path_factory.mktemp("mesh")
    predictor, metrics_port = llama_predictor(logs)
    ts = torchserve(logs)
    front = gateway(logs, mesh_config(predictor.address, ts))
    try:
        ts.process.start()
        predictor.start()
        # The gateway is SERVING once every backend is, TorchServe's models included.
        front.start(timeout=240, needs=(ts.process, predictor))
        yield Mesh(predictor, Metrics(metrics_port), ts, front)
    finally:
        front.stop()
        ts.process.stop()
        predictor.stop()


@pytest.fixture(scope="session")
def client(mesh: Mesh) -> Iterator[Client]:
    with Client(mesh.gateway.address) as c:
        yield c
