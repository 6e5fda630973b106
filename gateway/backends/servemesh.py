"""A backend that itself speaks servemesh.v1, such as the llama predictor: calls pass through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.backends.base import Backend
from gateway.config import BackendConfig, ModelConfig
from servemesh.channel import MAX_MESSAGE_BYTES
from servemesh.v1 import model_pb2
from servemesh.v1 import prediction_service_pb2 as pb
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc

_SERVING = health_pb2.HealthCheckResponse.SERVING
_RECONNECT_MIN_S, _RECONNECT_MAX_S = 0.2, 5.0


class ServemeshBackend(Backend):
    """Forwards servemesh.v1 calls to `target` unchanged, with the caller's deadline."""

    def __init__(self, config: BackendConfig, models: list[ModelConfig]) -> None:
        super().__init__(config, models)
        self._channel = grpc.aio.insecure_channel(
            config.target,
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._stub = pb_grpc.PredictionServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def predict(
        self, request: pb.PredictRequest, timeout: float | None
    ) -> pb.PredictResponse:
        call = self._stub.Predict(request, timeout=timeout)
        try:
            return await call
        finally:
            call.cancel()  # a no-op once done; stops the backend when our caller went away

    async def predict_stream(
        self, request: pb.PredictStreamRequest, timeout: float | None
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        call = self._stub.PredictStream(request, timeout=timeout)
        try:
            async for response in call:
                yield response
        finally:
            call.cancel()

    async def describe(self, model: str, timeout: float | None) -> model_pb2.ModelInfo:
        response = await self._stub.GetModel(pb.GetModelRequest(name=model), timeout=timeout)
        return response.model

    async def watch_health(self) -> AsyncIterator[bool]:
        delay = _RECONNECT_MIN_S
        while True:
            try:
                async for response in self._health.Watch(health_pb2.HealthCheckRequest()):
                    delay = _RECONNECT_MIN_S
                    yield response.status == _SERVING
            except grpc.aio.AioRpcError:
                pass
            yield False
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX_S)

    async def close(self) -> None:
        await self._channel.close()
