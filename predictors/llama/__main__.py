"""Starts the llama predictor: `python -m predictors.llama --help`."""

from __future__ import annotations

import asyncio
import logging

from predictors.llama.engine import LlamaEngine
from predictors.llama.servicer import LlamaServicer
from predictors.llama.settings import LlamaSettings, parse_settings
from runtime.server import GrpcServer
from runtime.settings import configure_logging, serve_metrics
from runtime.tracing import configure_tracing
from servemesh.v1 import prediction_service_pb2, prediction_service_pb2_grpc

log = logging.getLogger("predictors.llama")
SERVICE_NAME = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name


async def serve(settings: LlamaSettings) -> None:
    engine = LlamaEngine(settings)
    server = GrpcServer(settings.server, [SERVICE_NAME])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        LlamaServicer(engine), server.grpc
    )
    await server.start()
    await asyncio.to_thread(engine.load)
    await server.set_serving(True)
    log.info("serving %s on %s", settings.model_name, settings.server.address)
    try:
        await server.run_until_stopped()
    finally:
        engine.close()


def main() -> None:
    settings = parse_settings()
    configure_logging(settings.log_level, settings.observability.log_format)
    configure_tracing("servemesh-llama", settings.observability.otlp_endpoint)
    serve_metrics(settings.metrics_port, "predictor")
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
