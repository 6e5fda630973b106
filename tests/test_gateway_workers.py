"""`--workers 2`: two gateway processes on one port (SO_REUSEPORT) under a supervisor that
serves their metrics added together, in front of the session's llama predictor.

Connections, not calls, are what the kernel spreads: the test opens many, checks that both
workers took some, that every call is counted once in the one metrics endpoint, that the
OpenAI-compatible port is shared too, and that SIGTERM drains and ends them all.
"""

from __future__ import annotations

import signal

import grpc
import httpx2
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from servemesh.v1 import prediction_service_pb2 as pb
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc
from tests.servers import MODEL, gateway, mesh_config, wait_for

SERVING = health_pb2.HealthCheckResponse.SERVING
CONNECTIONS = 16  # all on one worker by chance: 2 in 2**16
CALLS = f"servemesh_gateway_calls_total{{code=OK,method=Predict,model={MODEL},protocol=servemesh}}"


@pytest.fixture(scope="module")
def two_workers(mesh, tmp_path_factory):
    front = gateway(tmp_path_factory.mktemp("workers"), mesh_config(mesh.predictor.address))
    front.command += ["--workers", "2"]
    front.start(timeout=60)
    try:
        yield front
    finally:
        front.stop()


def workers_of(front) -> list[psutil.Process]:
    return psutil.Process(front.process.pid).children()


def test_connections_spread_over_both_workers_and_calls_count_once(two_workers) -> None:
    front = two_workers
    assert len(workers_of(front)) == 2
    port = int(front.address.rpartition(":")[2])
    request = pb.PredictRequest(model=MODEL)
    request.text_generation.prompt = "Hi"
    request.text_generation.parameters.max_tokens = 1
    before = front.metrics.get(CALLS)
    own = [("grpc.use_local_subchannel_pool", 1)]  # one connection per channel
    channels = [grpc.insecure_channel(front.address, options=own) for _ in range(CONNECTIONS)]
    try:
        for channel in channels:
            # Each worker follows the backends' health on its own, and one that started a
            # moment later may not have had its first answer yet: as a client behind a load
            # balancer would, call once this connection's worker says it serves.
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service="")
            wait_for(
                lambda h=health, c=check: h.Check(c, timeout=5).status == SERVING,
                30,
                "the connection's worker serving",
            )
            assert pb_grpc.PredictionServiceStub(channel).Predict(request, timeout=30).model
        accepted = [
            sum(
                1
                for c in worker.net_connections("tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
            )
            for worker in workers_of(front)
        ]
    finally:
        for channel in channels:
            channel.close()
    assert min(accepted) >= 1 and sum(accepted) >= CONNECTIONS, accepted
    assert front.metrics.get(CALLS) - before == CONNECTIONS


def test_the_openai_port_is_shared_too(two_workers) -> None:
    for _ in range(4):
        with httpx2.Client(base_url=f"http://127.0.0.1:{two_workers.http_port}") as http:
            assert http.get("/v1/models").json()["data"][0]["id"] == MODEL


def test_sigterm_drains_every_worker(two_workers) -> None:
    children = workers_of(two_workers)
    two_workers.signal(signal.SIGTERM)
    assert two_workers.process.wait(timeout=20) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
