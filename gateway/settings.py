"""The gateway's settings, from flags with SERVEMESH_GATEWAY_* environment defaults."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from runtime.server import ServerSettings
from runtime.settings import env


@dataclass(frozen=True)
class GatewaySettings:
    server: ServerSettings
    config_path: str
    log_level: str


def parse_settings(argv: Sequence[str] | None = None) -> GatewaySettings:
    p = argparse.ArgumentParser(prog="python -m gateway", description="The servemesh gateway.")
    e = "SERVEMESH_GATEWAY_"
    p.add_argument("--address", default=env(e + "ADDRESS", "localhost:50051"))
    p.add_argument(
        "--config", default=env(e + "CONFIG", "deploy/mesh.toml"), help="mesh config (TOML)"
    )
    p.add_argument("--grace-s", type=float, default=float(env(e + "GRACE_S", "10")))
    p.add_argument("--log-level", default=env(e + "LOG_LEVEL", "info"))
    a = p.parse_args(argv)
    return GatewaySettings(
        server=ServerSettings(address=a.address, grace_s=a.grace_s),
        config_path=a.config,
        log_level=a.log_level,
    )
