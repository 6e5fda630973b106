"""A TorchServe worker that dies mid-request: the call fails at once with UNAVAILABLE,
TorchServe starts a new worker, the next call is served by it, and the gateway serves again.

The crash is real: tests/torchserve_fault/crash_handler.py (fault injection for tests only)
kills its own worker process when asked to. It runs in a TorchServe of its own, started here
with the mesh's launcher and config.properties on a model store that holds only its archive,
so the workers of the other tests' TorchServe are never touched.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest

from servemesh import Client, Prediction, Unavailable
from tests.servers import (
    TS_PYTHON,
    ServerProcess,
    TorchServe,
    gateway,
    health_status,
    mesh_config,
    torchserve,
    wait_for,
)
from torchserve_grpc import management_pb2, management_pb2_grpc

MODEL = "crash-test"
FAULT_DIR = Path(__file__).resolve().parent / "torchserve_fault"
ROUTE = f'[models.{MODEL}]\nbackend = "torchserve"\ntask = "generic"\n'
# Generous for a loaded 2-core machine: the crash call should fail within a second or two,
# and TorchServe's new worker is up a few seconds after its 1 s back-off.
FAIL_WITHIN_S = 30
RECOVER_WITHIN_S = 120


@dataclass(frozen=True)
class CrashMesh:
    torchserve: TorchServe
    gateway: ServerProcess

    @property
    def ts_log(self) -> Path:
        return self.torchserve.key_file.parent / "logs" / "ts_log.log"


def build_archive(store: Path) -> None:
    """The crash handler's model archive: no weights, one worker (model-config.yaml)."""
    subprocess.run(
        [
            str(TS_PYTHON.parent / "torch-model-archiver"),
            "--model-name",
            MODEL,
            "--version",
            "1.0",
            "--handler",
            str(FAULT_DIR / "crash_handler.py"),
            "--config-file",
            str(FAULT_DIR / "model-config.yaml"),
            "--export-path",
            str(store),
        ],
        check=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def crash_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashMesh]:
    logs = tmp_path_factory.mktemp("crash")
    store = logs / "model-store"
    store.mkdir()
    build_archive(store)
    ts = torchserve(logs)
    # The same launcher command, on this test's store (argparse keeps the last --model-store).
    ts.process.command += ["--model-store", str(store)]
    front = gateway(logs, mesh_config(ts=ts, extra_models=ROUTE), "crash-gw")
    try:
        ts.process.start()
        front.start(timeout=240, needs=(ts.process,))
        yield CrashMesh(ts, front)
    finally:
        front.stop()
        ts.process.stop()


def ready_worker_pids(ts: TorchServe) -> list[int]:
    """The pids of the crash model's READY workers, from TorchServe's management API."""
    with grpc.insecure_channel(ts.management) as channel:
        msg = (
            management_pb2_grpc.ManagementAPIsServiceStub(channel)
            .DescribeModel(
                management_pb2.DescribeModelRequest(model_name=MODEL),
                metadata=[("authorization", f"Bearer {ts.keys()['management']}")],
                timeout=10,
            )
            .msg
        )
    return [int(w["pid"]) for v in json.loads(msg) for w in v["workers"] if w["status"] == "READY"]


def served(client: Client, text: str) -> Prediction:
    """A call that must be answered by a worker, retried while TorchServe has none ready."""
    deadline = time.monotonic() + RECOVER_WITHIN_S
    while True:
        try:
            return client.predict(MODEL, inputs={"text": text}, timeout=RECOVER_WITHIN_S)
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def gateway_serving(address: str) -> bool:
    return all(health_status(address, name) == "SERVING" for name in ("", f"model/{MODEL}"))


@pytest.mark.parametrize(
    ("crash", "torchserve_codes"),
    [
        # TorchServe answers RESOURCE_EXHAUSTED when it has already seen the worker's exit
        # status 137 (it takes SIGKILL for the OOM killer), INTERNAL when it has not yet.
        ("crash", {"RESOURCE_EXHAUSTED", "INTERNAL"}),
        ("exit", {"INTERNAL"}),
    ],
    ids=["sigkill", "os-exit"],
)
def test_a_worker_that_dies_mid_request_fails_that_call_and_is_replaced(
    crash_mesh: CrashMesh, crash: str, torchserve_codes: set[str]
) -> None:
    # Retries off: the SDK would send the crashing request again (UNAVAILABLE is retryable)
    # and each attempt would kill the next worker.
    with Client(crash_mesh.gateway.address, max_attempts=1) as client:
        before = served(client, "hello")
        old_pid = int(before.outputs["pid"])
        assert before.outputs["length"] == "5"
        assert ready_worker_pids(crash_mesh.torchserve) == [old_pid], "one worker answered"

        log_offset = crash_mesh.ts_log.stat().st_size
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            client.predict(MODEL, inputs={"text": crash}, timeout=RECOVER_WITHIN_S)
        failed_after = time.monotonic() - started
        assert failed_after < FAIL_WITHIN_S, "the call fails when the worker dies, not later"
        assert caught.value.reason == "BACKEND_WORKER_DIED"
        assert "Worker died" in caught.value.message
        assert caught.value.metadata["model"] == MODEL
        assert caught.value.metadata["torchserve_code"] in torchserve_codes
        wait_for(lambda: not psutil.pid_exists(old_pid), 30, "the crashed worker is gone")

        after = served(client, "hello again")
        recovered_after = time.monotonic() - started
        new_pid = int(after.outputs["pid"])
        assert after.outputs["length"] == "11"
    assert new_pid != old_pid, "a new worker process served the call after the crash"
    assert recovered_after < RECOVER_WITHIN_S
    assert ready_worker_pids(crash_mesh.torchserve) == [new_pid]
    wait_for(lambda: gateway_serving(crash_mesh.gateway.address), 60, "gateway SERVING again")
    with open(crash_mesh.ts_log, "rb") as f:
        f.seek(log_offset)
        assert b"Retry worker" in f.read(), "TorchServe itself restarted the worker"
    print(
        f"{crash}: failed after {failed_after:.2f} s "
        f"(TorchServe said {caught.value.metadata['torchserve_code']}), "
        f"served again after {recovered_after:.2f} s"
    )
