"""Two TorchServes behind one backend: calls spread over both, each replica's health comes
from TorchServe itself (Ping and its models' workers), and losing one leaves the backend
serving on the other.

The replicas listen on the same ports at two loopback addresses (127.0.0.1 and 127.0.0.2),
as pods of one Deployment do at their own IPs, so `management_port` finds each one's
management API at its own host. Each loads only the classifier, with token authorization off
(replicas cannot share one key file).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from deploy.local.ports import free_ports
from servemesh import Client
from tests.servers import ServerProcess, TorchServe, gateway, health_status, torchserve, wait_for

MODEL = "efficientnet-lite0"
HOSTS = ("127.0.0.1", "127.0.0.2")
CAT_CLASSES = range(281, 286)


def predictions(replica: TorchServe) -> int:
    """Predictions calls TorchServe has logged as answered."""
    log = replica.key_file.parent / "logs" / "access_log.log"
    text = log.read_text() if log.exists() else ""
    return text.count("InferenceAPIsService/Predictions")


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[TorchServe], ServerProcess]]:
    log_dir: Path = tmp_path_factory.mktemp("torchserve-replicas")
    ports = tuple(free_ports(6))
    both = [
        torchserve(
            log_dir,
            f"torchserve-{i}",
            host,
            ports,
            extra=("--models", f"{MODEL}.mar", "--no-token-auth"),
        )
        for i, host in enumerate(HOSTS)
    ]
    for ts in both:
        ts.process.start()
    config = "\n".join(
        [
            "[backends.torchserve]",
            'kind = "torchserve"',
            f"targets = {[ts.grpc for ts in both]!r}".replace("'", '"'),
            f"management_port = {ports[1]}",
            f"[models.{MODEL}]",
            'backend = "torchserve"',
            'task = "image_classification"',
        ]
    )
    front = gateway(log_dir, config)
    try:
        front.start(timeout=240, needs=tuple(ts.process for ts in both))
        yield both, front
    finally:
        front.stop()
        for ts in both:
            ts.process.stop()


def cat_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "JPEG")  # a public-domain photo of a cat
    return buffer.getvalue()


def test_calls_spread_over_both_replicas(replicas) -> None:
    both, front = replicas
    before = [predictions(ts) for ts in both]
    image = cat_jpeg()
    with Client(front.address) as client, ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda _: client.predict(MODEL, inputs={"image": image}), range(32))
        )
    assert all(r.outputs["classes"][0].index in CAT_CLASSES for r in results)
    wait_for(lambda: sum(predictions(ts) for ts in both) - sum(before) == 32, 10, "access logs")
    served = [predictions(ts) - b for ts, b in zip(both, before, strict=True)]
    assert min(served) >= 4, f"calls per replica: {served}"
    for ts in both:
        gauge = f"servemesh_gateway_replica_serving{{backend=torchserve,replica={ts.grpc}}}"
        assert front.metrics.get(gauge) == 1.0, gauge


def test_losing_a_replica_leaves_the_backend_serving(replicas) -> None:
    both, front = replicas
    lost, kept = both
    lost.process.stop()
    gauge = f"servemesh_gateway_replica_serving{{backend=torchserve,replica={lost.grpc}}}"
    wait_for(lambda: front.metrics.get(gauge) == 0.0, 15, "the lost replica taken out")
    assert health_status(front.address, "backend/torchserve") == "SERVING"
    assert health_status(front.address, "all-backends") == "SERVING"
    before = predictions(kept)
    image = cat_jpeg()
    with Client(front.address, max_attempts=1) as client:
        for _ in range(6):
            assert client.predict(MODEL, inputs={"image": image}).outputs["classes"]
    assert predictions(kept) - before == 6
    kept.process.stop()
    wait_for(
        lambda: health_status(front.address, "backend/torchserve") == "NOT_SERVING",
        15,
        "the backend down with both replicas gone",
    )
