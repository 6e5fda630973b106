"""A servemesh.v1 backend that answers at once: Predict returns its input text as its output.

The far end of benchmarks/proxy_overhead.py, so that what a relay in front of it adds is not
hidden by a model's time. It serves grpc.health.v1 too, which the gateway follows.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from servemesh.v1 import inference_pb2 as inf
from servemesh.v1 import prediction_service_pb2 as pb
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc


class Echo(pb_grpc.PredictionServiceServicer):
    async def Predict(
        self, request: pb.PredictRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictResponse:
        text = request.inference.inputs["text"].text
        return pb.PredictResponse(
            request_id=request.request_id,
            model=request.model,
            inference=inf.InferenceOutput(outputs={"text": inf.InferenceValue(text=text)}),
        )


async def serve(address: str) -> None:
    server = grpc.aio.server()
    pb_grpc.add_PredictionServiceServicer_to_server(Echo(), server)
    checks = health.aio.HealthServicer()
    await checks.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--address", required=True)
    asyncio.run(serve(p.parse_args().address))


if __name__ == "__main__":
    main()
