"""The gateway's settings, from flags with SERVEMESH_GATEWAY_* environment defaults."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from runtime.server import ServerSettings
from runtime.settings import add_server_flags, env, server_settings


@dataclass(frozen=True)
class GatewaySettings:
    server: ServerSettings
    config_path: str
    metrics_port: int
    log_level: str


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
    a = p.parse_args(argv)
    return GatewaySettings(
        server=server_settings(p, a, e),
        config_path=a.config,
        metrics_port=a.metrics_port,
        log_level=a.log_level,
    )
