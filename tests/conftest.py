"""Session-wide real servers: one llama predictor and one gateway in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from servemesh import Client
from tests.servers import Metrics, ServerProcess, gateway, llama_predictor


@dataclass(frozen=True)
class Mesh:
    predictor: ServerProcess
    metrics: Metrics
    gateway: ServerProcess


@pytest.fixture(scope="session")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    logs = tmp_path_factory.mktemp("mesh")
    predictor, metrics_port = llama_predictor(logs)
    predictor.start()
    front = gateway(logs, {"llama": predictor.address})
    try:
        front.start()
        yield Mesh(predictor, Metrics(metrics_port), front)
    finally:
        front.stop()
        predictor.stop()


@pytest.fixture(scope="session")
def client(mesh: Mesh) -> Iterator[Client]:
    with Client(mesh.gateway.address) as c:
        yield c
