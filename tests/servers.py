"""Starts real servemesh servers as subprocesses on free loopback ports, for the tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.health_probe import health_status
from deploy.local.meshctl import TS_PYTHON
from deploy.local.ports import free_ports
from deploy.local.prometheus import read_metrics

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = "smollm2-135m-instruct"
# Short prompts whose greedy continuations differ from one another.
PROMPTS = [
    "The capital of Japan is",
    "Water boils at a temperature of",
    "The largest planet in the solar system is",
    "def fibonacci(n):",
    "My favourite fruit is",
    "Photosynthesis is the process",
    "1, 2, 3, 4,",
    "The first man on the moon was",
]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout} s: {what}")
        time.sleep(interval)


class ServerProcess:
    """A server command on a free port; start() returns once its health says SERVING."""

    def __init__(self, name: str, command: list[str], address: str | None, log_dir: Path) -> None:
        self.name, self.command, self.address = name, command, address
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics: Metrics | None = None  # its Prometheus metrics, where it has them
        self.http_port: int | None = None  # a gateway's OpenAI-compatible HTTP port
        self.health_service = ""  # the health name start() waits for

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(
        self, timeout: float = 60, wait: bool = True, needs: tuple[ServerProcess, ...] = ()
    ) -> ServerProcess:
        """Starts the command and waits for health SERVING (when it has an address); fails
        fast when it, or a process in `needs`, exits meanwhile."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # stop() ends the whole group: TorchServe's Java too
            )
        if self.address is None or not wait:
            return self
        deadline = time.monotonic() + timeout
        while health_status(self.address, self.health_service) != "SERVING":
            for proc in (self, *needs):
                if proc.process is not None and proc.process.poll() is not None:
                    raise RuntimeError(
                        f"{proc.name} exited with {proc.process.returncode}:\n{proc.log_tail()}"
                    )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} not SERVING after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self) -> int | None:
        """Stops the process and everything it started (TorchServe's Java and workers)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # children that outlived the leader
        return self.process.returncode


def llama_predictor(log_dir: Path, name: str = "llama", *extra: str) -> tuple[ServerProcess, int]:
    """A llama predictor process (not started) and its metrics port."""
    port, metrics_port = free_ports(2)
    command = [
        sys.executable,
        "-m",
        "predictors.llama",
        "--address",
        f"127.0.0.1:{port}",
        "--metrics-port",
        str(metrics_port),
        "--grace-s",
        "2",
        *extra,
    ]
    return ServerProcess(name, command, f"127.0.0.1:{port}", log_dir), metrics_port


TORCHSERVE_MODELS = ("efficientnet-lite0", "all-minilm-l6-v2", "smollm2-135m-torch")


@dataclass(frozen=True)
class TorchServe:
    """A TorchServe process and where to reach it."""

    process: ServerProcess
    grpc: str
    management: str
    key_file: Path

    def keys(self) -> dict[str, str]:
        return {k: v["key"] for k, v in json.loads(self.key_file.read_text()).items()}


def torchserve(
    log_dir: Path,
    name: str = "torchserve",
    host: str = "127.0.0.1",
    ports: tuple[int, ...] | None = None,
    extra: tuple[str, ...] = (),
) -> TorchServe:
    """TorchServe (not started) on free ports (or `ports`: gRPC, gRPC management, HTTP,
    HTTP management, metrics, worker) at `host`, with its run folder under `log_dir`;
    `extra` are more launch.py flags."""
    run_dir = log_dir / name
    grpc_port, management_port, http, http_management, metrics, worker = ports or free_ports(6)
    command = [
        str(TS_PYTHON),
        "predictors/torchserve/launch.py",
        "--host",
        host,
        "--run-dir",
        str(run_dir),
        "--http-port",
        str(http),
        "--management-port",
        str(http_management),
        "--metrics-port",
        str(metrics),
        "--grpc-port",
        str(grpc_port),
        "--grpc-management-port",
        str(management_port),
        "--worker-port",
        str(worker),
        *extra,
    ]
    process = ServerProcess(name, command, None, log_dir)
    return TorchServe(
        process, f"{host}:{grpc_port}", f"{host}:{management_port}", run_dir / "key_file.json"
    )


def mesh_config(
    llama: str | list[str] | None = None,
    ts: TorchServe | None = None,
    key_file: str | None = None,
    extra_models: str = "",
    llama_options: str = "",
    ts_models: bool = True,
) -> str:
    """A mesh configuration (TOML) with the given backends and their models; `llama` is one
    address or a list of replicas, `llama_options` more lines of its backend table;
    `ts_models=False` routes none of TorchServe's models, for `extra_models` to route them."""
    lines = []
    if llama:
        targets = [llama] if isinstance(llama, str) else llama
        lines += [
            "[backends.llama]",
            'kind = "servemesh"',
            f"targets = {json.dumps(targets)}",
            llama_options,
            f"[models.{MODEL}]",
            'backend = "llama"',
        ]
    if ts:
        key = str(ts.key_file) if key_file is None else key_file
        lines += [
            "[backends.torchserve]",
            'kind = "torchserve"',
            f'target = "{ts.grpc}"',
            f'management_target = "{ts.management}"',
            f'key_file = "{key}"',
        ]
    if ts and ts_models:
        lines += [
            "[models.efficientnet-lite0]",
            'backend = "torchserve"',
            'task = "image_classification"',
            "[models.all-minilm-l6-v2]",
            'backend = "torchserve"',
            'task = "embedding"',
            "[models.smollm2-135m-torch]",
            'backend = "torchserve"',
            'task = "text_generation"',
            "streaming = true",
            "max_tokens = 512",
        ]
    return "\n".join(lines) + "\n" + extra_models


def gateway(log_dir: Path, config: str, name: str = "gateway") -> ServerProcess:
    """A gateway process (not started) with the given mesh configuration."""
    config_path = log_dir / f"{name}.toml"
    config_path.write_text(config)
    port, metrics_port, http_port = free_ports(3)
    command = [
        sys.executable,
        "-m",
        "gateway",
        "--http-address",
        f"127.0.0.1:{http_port}",
        "--address",
        f"127.0.0.1:{port}",
        "--config",
        str(config_path),
        "--grace-s",
        "2",
        "--metrics-port",
        str(metrics_port),
    ]
    process = ServerProcess(name, command, f"127.0.0.1:{port}", log_dir)
    process.metrics = Metrics(metrics_port)
    process.http_port = http_port
    # Every backend, not just one: a test calls every model of its mesh.
    process.health_service = "all-backends"
    return process


class Metrics:
    """Reads a predictor's Prometheus metrics."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def read(self) -> dict[str, float]:
        return read_metrics(self.url)

    def get(self, name: str) -> float:
        return self.read().get(name, 0.0)

    def settled(self) -> dict[str, float]:
        """A llama predictor's metrics once nothing runs or waits there."""
        wait_for(lambda: self.get("servemesh_llama_active_sequences") == 0, 10, "no sequences")
        wait_for(lambda: self.get("servemesh_llama_queued_requests") == 0, 10, "empty queue")
        return self.read()
