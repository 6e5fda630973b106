"""The gateway's settings, from flags with SERVEMESH_GATEWAY_* environment defaults."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

from runtime.server import ServerSettings
from runtime.settings import (
    Observability,
    add_observability_flags,
    add_server_flags,
    env,
    observability,
    server_settings,
)


@dataclass(frozen=True)
class GatewaySettings:
    server: ServerSettings
    config_path: str
    metrics_port: int
    log_level: str
    http_address: str | None = None  # the OpenAI-compatible HTTP door; None: off
    http_max_embedding_inputs: int = 256
    observability: Observability = field(default_factory=Observability)
    workers: int = 1  # processes serving the same ports


def parse_settings(argv: Sequence[str] | None = None) -> GatewaySettings:
    p = argparse.ArgumentParser(prog="python -m gateway", description="The servemesh gateway.")
    e = "SERVEMESH_GATEWAY_"
    add_server_flags(p, e, default_address="localhost:50051")
    p.add_argument(
        "--config", default=env(e + "CONFIG", "deploy/mesh.toml"), help="mesh config (TOML)"
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(env(e + "METRICS_PORT", "9151")),
        help="Prometheus metrics on http://127.0.0.1:PORT/metrics; 0 turns them off",
    )
    p.add_argument("--log-level", default=env(e + "LOG_LEVEL", "info"))
    p.add_argument(
        "--workers",
        type=int,
        default=int(env(e + "WORKERS", "1")),
        help="gateway processes on the same ports (SO_REUSEPORT), for more than one core; "
        "the first process serves their metrics together",
    )
    add_observability_flags(p, e)
    h = p.add_argument_group("OpenAI-compatible HTTP")
    h.add_argument(
        "--http-address",
        default=env(e + "HTTP_ADDRESS", "off"),
        help="HOST:PORT of the OpenAI-compatible HTTP API (make up: localhost:8000); off: none",
    )
    h.add_argument(
        "--http-max-embedding-inputs",
        type=int,
        default=int(env(e + "HTTP_MAX_EMBEDDING_INPUTS", "256")),
        help="texts one /v1/embeddings request may hold",
    )
    a = p.parse_args(argv)
    if a.http_max_embedding_inputs < 1:
        p.error("--http-max-embedding-inputs must be positive")
    if a.workers < 1:
        p.error("--workers must be positive")
    if a.workers > 1 and a.address.rpartition(":")[2] in ("", "0"):
        p.error("--workers above 1 needs a fixed port in --address: workers share it")
    return GatewaySettings(
        server=server_settings(p, a, e),
        config_path=a.config,
        metrics_port=a.metrics_port,
        log_level=a.log_level,
        http_address=None if a.http_address.strip().lower() in ("", "off") else a.http_address,
        http_max_embedding_inputs=a.http_max_embedding_inputs,
        observability=observability(p, a),
        workers=a.workers,
    )
