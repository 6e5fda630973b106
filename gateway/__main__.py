"""Starts the gateway: `python -m gateway --help`."""

from __future__ import annotations

import asyncio
import logging
import sys

from gateway.backends import make_backend
from gateway.body_limits import check_body
from gateway.config import ConfigError, load_config
from gateway.health import HealthFollower
from gateway.router import Route, Router
from gateway.servicer import GatewayServicer
from gateway.settings import GatewaySettings, parse_settings
from runtime.server import GrpcServer
from runtime.settings import configure_logging, serve_metrics
from servemesh.v1 import prediction_service_pb2, prediction_service_pb2_grpc

log = logging.getLogger("gateway")
SERVICE_NAME = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name


async def serve(settings: GatewaySettings) -> None:
    config = load_config(settings.config_path)
    backends = {
        name: make_backend(
            b,
            [m for m in config.models.values() if m.backend == name],
            settings.server.max_message_bytes,
        )
        for name, b in config.backends.items()
    }
    router = Router(
        [Route(m.name, backends[m.backend], m.backend_model) for m in config.models.values()]
    )
    server = GrpcServer(
        settings.server,
        [SERVICE_NAME],
        body_check=lambda method, body: check_body(method, body, config.limits),
        max_request_bytes=config.limits.max_request_bytes,
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        GatewayServicer(router, config.limits), server.grpc
    )
    health = HealthFollower(server, router, overall=["", SERVICE_NAME])
    await server.start()
    await health.start()
    log.info("routing %s", ", ".join(f"{r.model} -> {r.backend.name}" for r in router.routes))
    try:
        await server.run_until_stopped()
    finally:
        await health.stop()
        await asyncio.gather(*(b.close() for b in backends.values()))


def main() -> None:
    settings = parse_settings()
    configure_logging(settings.log_level)
    serve_metrics(settings.metrics_port, "gateway")
    try:
        asyncio.run(serve(settings))
    except ConfigError as error:
        sys.exit(f"gateway: {error}")


if __name__ == "__main__":
    main()
