"""The asyncio client for servemesh.v1.PredictionService."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Unpack

import grpc
from grpc_health.v1 import health_pb2

from servemesh.channel import DEFAULT, ClientBase, Timeout
from servemesh.errors import from_rpc_error
from servemesh.metadata import request_id_in
from servemesh.requests import RequestOptions, build_request
from servemesh.types import Model, Prediction, StreamChunk, health_name
from servemesh.v1 import prediction_service_pb2 as pb


class AsyncClient(ClientBase):
    """Calls a servemesh gateway or predictor from asyncio; `async with` closes it."""

    _grpc = grpc.aio

    async def _unary(self, method: Callable[..., Any], request: Any, timeout: Timeout) -> Any:
        try:
            return await method(request, **self._call_options(timeout))
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None

    async def predict(
        self,
        model: str,
        message: str | None = None,
        *,
        timeout: Timeout = DEFAULT,
        **options: Unpack[RequestOptions],
    ) -> Prediction:
        """Runs a model once on a user `message`, or on prompt=, messages= or inputs=."""
        request = build_request(pb.PredictRequest, model, message, **options)
        call = self._stub.Predict(request, **self._call_options(timeout))
        try:
            response = await call
            # Both came with the response: awaiting them does not wait.
            metadata = await call.initial_metadata(), await call.trailing_metadata()
            request_id = request_id_in(*metadata)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return Prediction.from_proto(response, request_id)

    async def predict_stream(
        self,
        model: str,
        message: str | None = None,
        *,
        timeout: Timeout = DEFAULT,
        **options: Unpack[RequestOptions],
    ) -> AsyncIterator[StreamChunk]:
        """Streams a model's output; leaving the loop early cancels the generation."""
        request = build_request(pb.PredictStreamRequest, model, message, **options)
        call = self._stub.PredictStream(request, **self._call_options(timeout))
        request_id = None
        try:
            async for response in call:
                if request_id is None:  # it came before the first message
                    request_id = request_id_in(await call.initial_metadata())
                yield StreamChunk.from_proto(response, request_id)
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    async def list_models(self, *, timeout: Timeout = DEFAULT) -> list[Model]:
        """The models the server can run, sorted by name."""
        response = await self._unary(self._stub.ListModels, pb.ListModelsRequest(), timeout)
        return [Model.from_proto(m) for m in response.models]

    async def get_model(self, name: str, *, timeout: Timeout = DEFAULT) -> Model:
        """One model's description; NotFound when there is no such model."""
        request = pb.GetModelRequest(name=name)
        return Model.from_proto((await self._unary(self._stub.GetModel, request, timeout)).model)

    async def health(self, service: str = "", *, timeout: Timeout = DEFAULT) -> str:
        """The grpc.health.v1 status of the server, or of one of its services: 'SERVING', ..."""
        request = health_pb2.HealthCheckRequest(service=service)
        return health_name(await self._unary(self._health.Check, request, timeout))

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
