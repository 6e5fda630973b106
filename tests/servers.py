"""Starts real servemesh servers as subprocesses on free loopback ports, for the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = "smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health_status(address: str, service: str = "") -> str:
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            )
        except grpc.RpcError as error:
            return error.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout} s: {what}")
        time.sleep(interval)


class ServerProcess:
    """A server command on a free port; start() returns once its health says SERVING."""

    def __init__(self, name: str, command: list[str], address: str, log_dir: Path) -> None:
        self.name, self.command, self.address = name, command, address
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self, timeout: float = 60) -> ServerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while health_status(self.address) != "SERVING":
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
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
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def llama_predictor(log_dir: Path, name: str = "llama", *extra: str) -> tuple[ServerProcess, int]:
    """A llama predictor process (not started) and its metrics port."""
    port, metrics_port = free_port(), free_port()
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


def gateway(log_dir: Path, backends: dict[str, str], name: str = "gateway") -> ServerProcess:
    """A gateway process (not started) routing MODEL to the first of `backends`."""
    config = log_dir / f"{name}.toml"
    lines = []
    for backend, target in backends.items():
        lines += [f"[backends.{backend}]", 'kind = "servemesh"', f'target = "{target}"', ""]
    lines += [f"[models.{MODEL}]", f'backend = "{next(iter(backends))}"']
    config.write_text("\n".join(lines) + "\n")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gateway",
        "--address",
        f"127.0.0.1:{port}",
        "--config",
        str(config),
        "--grace-s",
        "2",
    ]
    return ServerProcess(name, command, f"127.0.0.1:{port}", log_dir)


class Metrics:
    """Reads a predictor's Prometheus metrics."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def read(self) -> dict[str, float]:
        import urllib.request

        with urllib.request.urlopen(self.url, timeout=2) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return values

    def get(self, name: str) -> float:
        return self.read().get(name, 0.0)
