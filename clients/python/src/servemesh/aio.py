"""The asyncio client for servemesh.v1.PredictionService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from servemesh.channel import DEFAULT, ClientBase, Timeout, resolve_timeout
from servemesh.errors import from_rpc_error
from servemesh.requests import build_request
from servemesh.types import Model, Prediction, StreamChunk
from servemesh.v1 import prediction_service_pb2 as pb


class AsyncClient(ClientBase):
    """Calls a servemesh gateway or predictor from asyncio; `async with` closes it."""

    _grpc = grpc.aio

    async def predict(
        self, model: str, prompt: str | None = None, *, timeout: Timeout = DEFAULT, **kwargs: Any
    ) -> Prediction:
        """Runs a model once. Takes prompt, messages= or inputs=, plus generation parameters."""
        request = build_request(pb.PredictRequest, model, prompt, **kwargs)
        try:
            response = await self._stub.Predict(
                request, timeout=resolve_timeout(timeout, self._timeout), metadata=self._metadata
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return Prediction.from_proto(response)

    async def predict_stream(
        self, model: str, prompt: str | None = None, *, timeout: Timeout = DEFAULT, **kwargs: Any
    ) -> AsyncIterator[StreamChunk]:
        """Streams a model's output; leaving the loop early cancels the generation."""
        request = build_request(pb.PredictStreamRequest, model, prompt, **kwargs)
        call = self._stub.PredictStream(
            request, timeout=resolve_timeout(timeout, self._timeout), metadata=self._metadata
        )
        try:
            async for response in call:
                yield StreamChunk.from_proto(response)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    async def list_models(self, *, timeout: Timeout = DEFAULT) -> list[Model]:
        """The models the server can run, sorted by name."""
        try:
            response = await self._stub.ListModels(
                pb.ListModelsRequest(),
                timeout=resolve_timeout(timeout, self._timeout),
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return [Model.from_proto(m) for m in response.models]

    async def get_model(self, name: str, *, timeout: Timeout = DEFAULT) -> Model:
        """One model's description; NotFound when there is no such model."""
        try:
            response = await self._stub.GetModel(
                pb.GetModelRequest(name=name),
                timeout=resolve_timeout(timeout, self._timeout),
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return Model.from_proto(response.model)

    async def health(self, service: str = "", *, timeout: Timeout = DEFAULT) -> str:
        """The grpc.health.v1 status of the server, or of one of its services: 'SERVING', ..."""
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=resolve_timeout(timeout, self._timeout),
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
