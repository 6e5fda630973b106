"""Starts the gateway: `python -m gateway --help`."""

from __future__ import annotations

import asyncio
import logging
import sys

from gateway import workers
from gateway.backends import make_backend
from gateway.body_limits import check_body
from gateway.config import ConfigError, load_config
from gateway.dispatch import Dispatcher
from gateway.health import HealthFollower
from gateway.kserve.servicer import SERVICE_NAME as KSERVE_SERVICE_NAME
from gateway.kserve.servicer import KServeServicer
from gateway.openai_http.app import HttpLimits, OpenAIApi
from gateway.openai_http.listener import HttpListener
from gateway.router import Route, Router
from gateway.servicer import SERVICE_NAME, GatewayServicer, add_to_server
from gateway.settings import GatewaySettings, parse_settings
from kserve_v2 import grpc_predict_v2_pb2_grpc
from runtime.server import GrpcServer
from runtime.settings import configure_logging, serve_metrics
from runtime.tracing import configure_tracing

log = logging.getLogger("gateway")


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
        [SERVICE_NAME, KSERVE_SERVICE_NAME],
        body_check=lambda method, body: check_body(method, body, config.limits),
        max_request_bytes=config.limits.max_request_bytes,
    )
    dispatcher = Dispatcher(router, config.limits)
    add_to_server(GatewayServicer(dispatcher), server.grpc)
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        KServeServicer(dispatcher, config.models), server.grpc
    )
    http = _http_listener(settings, dispatcher, config.limits.max_request_bytes)
    health = HealthFollower(server, router, overall=["", SERVICE_NAME, KSERVE_SERVICE_NAME])
    await server.start()
    await health.start()
    http_serving = None
    if http is not None:
        server.on_stop.append(http.stop)
        http_serving = asyncio.create_task(http.serve())
    log.info("routing %s", ", ".join(f"{r.model} -> {r.backend.name}" for r in router.routes))
    try:
        await server.run_until_stopped()
        if http_serving is not None:
            await http_serving  # its requests in flight had the same grace
    finally:
        await health.stop()
        await asyncio.gather(*(b.close() for b in backends.values()))


def _http_listener(
    settings: GatewaySettings, dispatcher: Dispatcher, max_body_bytes: int
) -> HttpListener | None:
    """The OpenAI-compatible door, when --http-address is set; bound before anything starts,
    so a port in use ends the gateway at once."""
    if settings.http_address is None:
        return None
    limits = HttpLimits(max_body_bytes, settings.http_max_embedding_inputs)
    api = OpenAIApi(dispatcher, limits, settings.server.api_keys)
    return HttpListener(api.app, settings.http_address, settings.server, workers.is_worker())


def main() -> None:
    settings = parse_settings()
    configure_logging(settings.log_level, settings.observability.log_format)
    if settings.workers > 1 and not workers.is_worker():
        sys.exit(workers.supervise(settings.workers, settings.metrics_port, sys.argv[1:]))
    configure_tracing("servemesh-gateway", settings.observability.otlp_endpoint)
    if not workers.is_worker():  # the supervisor serves its workers' metrics
        serve_metrics(settings.metrics_port, "gateway")
    try:
        asyncio.run(serve(settings))
    except ConfigError as error:
        sys.exit(f"gateway: {error}")


if __name__ == "__main__":
    main()
