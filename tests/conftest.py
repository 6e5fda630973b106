"""Session-wide real servers: one llama predictor and one gateway in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

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
