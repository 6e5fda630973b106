"""Several gateway processes on the same ports, for more than one core: the kernel spreads new
connections over them (SO_REUSEPORT, which gRPC sets on its listening sockets and the HTTP
listener sets when shared).

The first process supervises: it starts the workers (the same command, marked by
WORKER_ENV), serves their Prometheus metrics added together (prometheus_client's
multiprocess mode, in a folder of its own), passes SIGTERM and SIGINT on so that each worker
drains its own calls, and ends them all when one ends by itself: a half-sized gateway on a
port that looks whole would be worse than one a supervisor (Kubernetes, compose, meshctl)
restarts. Each worker follows the backends' health itself, so whichever a probe reaches
answers for the gateway.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import prometheus_client
from prometheus_client import multiprocess

from runtime.settings import env

log = logging.getLogger(__name__)
WORKER_ENV = "SERVEMESH_GATEWAY_WORKER"  # in a worker: its number, from 1
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it at import


def is_worker() -> bool:
    return WORKER_ENV in os.environ


def supervise(workers: int, metrics_port: int, argv: Sequence[str]) -> int:
    """Runs `workers` copies of `python -m gateway ARGV` until a signal or until one ends;
    returns the exit status for the supervisor."""
    metrics_dir = tempfile.mkdtemp(prefix="servemesh-gateway-metrics-")
    try:
        if metrics_port:
            registry = prometheus_client.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=metrics_dir)
            host = env("SERVEMESH_METRICS_HOST", "127.0.0.1")
            prometheus_client.start_http_server(metrics_port, addr=host, registry=registry)
        children = [
            subprocess.Popen(
                [sys.executable, "-m", "gateway", *argv],
                env={**os.environ, WORKER_ENV: str(i), MULTIPROC_ENV: metrics_dir},
            )
            for i in range(1, workers + 1)
        ]
        log.info("gateway: %d workers, pids %s", workers, " ".join(str(c.pid) for c in children))
        return _wait(children, metrics_dir)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _wait(children: list[subprocess.Popen[bytes]], metrics_dir: str) -> int:
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status, ended = 0, set()
    while any(c.poll() is None for c in children):
        for child in children:
            code = child.poll()
            if code is None or child.pid in ended:
                continue
            ended.add(child.pid)
            multiprocess.mark_process_dead(child.pid, metrics_dir)
            if not stopping:
                log.error("gateway worker %d ended with %d: stopping the others", child.pid, code)
                status = code or 1
                stop(signal.SIGTERM, None)
        time.sleep(0.2)
    # A worker that ended by itself decides the status, even when the others then drained
    # cleanly; otherwise the workers' own (a signal's negative code counts as a failure).
    return status or max(abs(c.returncode or 0) for c in children)
