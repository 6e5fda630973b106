"""The asyncio client for servemesh.v1.PredictionService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from servemesh.channel import (
    DEFAULT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_TARGET,
    DEFAULT_TIMEOUT_S,
    MAX_MESSAGE_BYTES,
    Timeout,
    auth_metadata,
    channel_options,
    client_credentials,
    resolve_timeout,
)
from servemesh.errors import from_rpc_error
from servemesh.requests import build_request
from servemesh.types import Model, Prediction, StreamChunk
from servemesh.v1 import prediction_service_pb2 as pb
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc


class AsyncClient:
    """Calls a servemesh gateway or predictor from asyncio; `async with` closes it."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        api_key: str | None = None,
        tls: bool = False,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_server_name: str | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """`api_key` goes with every call as `authorization: Bearer KEY`. TLS is on when
        `tls` is true or a TLS file is named: `tls_ca` is the CA that signed the server's
        certificate (default: the system's), `tls_cert` and `tls_key` a client certificate
        for servers that require one (mTLS). `credentials` are ready-made channel
        credentials instead."""
        self._metadata = auth_metadata(api_key)
        options = channel_options(max_attempts, max_message_bytes, tls_server_name)
        secure = client_credentials(credentials, tls, tls_ca, tls_cert, tls_key)
        self._channel = (
            grpc.aio.secure_channel(target, secure, options)
            if secure
            else grpc.aio.insecure_channel(target, options)
        )
        self._stub = pb_grpc.PredictionServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._timeout = timeout

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
