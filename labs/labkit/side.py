"""Servers a lab starts beside the running mesh: predictors with other settings, and a gateway
in front of them, through the same process manager as `make up`, on free ports."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy.local.meshctl import Process, RunDir, down, up
from deploy.local.ports import free_ports
from deploy.local.prometheus import read_metrics
from predictors.llama.settings import DEFAULT_MODEL_NAME


@dataclass(frozen=True)
class SideServer:
    """A server a lab runs: its process, where it answers, and its Prometheus metrics."""

    process: Process
    address: str
    metrics_url: str
    model: str = ""  # a predictor's model name

    @property
    def name(self) -> str:
        return self.process.name

    def metrics(self) -> dict[str, float]:
        return read_metrics(self.metrics_url)

    def rss_bytes(self) -> float:
        """The server's resident memory, from prometheus-client's process collector."""
        return self.metrics()["process_resident_memory_bytes"]


def _server(name: str, module: str, args: list[str], model: str = "") -> SideServer:
    """`python -m module` on free ports for its address and its metrics."""
    port, metrics_port = free_ports(2)
    address = f"127.0.0.1:{port}"
    command = [sys.executable, "-m", module, "--address", address]
    command += ["--metrics-port", str(metrics_port), "--grace-s", "1", *args]
    return SideServer(
        Process(name, command, address), address, f"http://127.0.0.1:{metrics_port}/metrics", model
    )


def predictor(name: str, *flags: str, model: str = DEFAULT_MODEL_NAME) -> SideServer:
    """A llama predictor with the given flags (e.g. "--prefill-chunk", "32")."""
    return _server(name, "predictors.llama", ["--model-name", model, *flags], model)


def gateway(name: str, routes: dict[str, SideServer], run_dir: Path) -> SideServer:
    """A gateway that serves each route's model name from its predictor (renamed there to the
    predictor's own model name)."""
    lines = []
    for i, (model, server) in enumerate(routes.items()):
        lines += [
            f"[backends.b{i}]",
            'kind = "servemesh"',
            f"target = {json.dumps(server.address)}",
        ]
        lines += [f"[models.{model}]", f'backend = "b{i}"']
        lines += [f"backend_model = {json.dumps(server.model)}"]
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / f"{name}.toml"
    config.write_text("\n".join(lines) + "\n")
    return _server(name, "gateway", ["--config", str(config)])


@contextlib.contextmanager
def running(servers: Sequence[SideServer], run_dir: Path) -> Iterator[None]:
    """Starts the servers in order, each SERVING before the next; stops them all at the end,
    also when the lab fails."""
    run = RunDir(Path(run_dir).resolve())
    processes = [s.process for s in servers]
    try:
        if up(processes, run) != 0:
            raise RuntimeError(f"a side server did not start; see the logs in {run.path}")
        yield
    finally:
        down(processes, run)
