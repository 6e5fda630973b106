"""The blocking client for servemesh.v1.PredictionService."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from servemesh.channel import DEFAULT, ClientBase, Timeout, resolve_timeout
from servemesh.errors import from_rpc_error
from servemesh.requests import build_request
from servemesh.types import Model, Prediction, StreamChunk
from servemesh.v1 import prediction_service_pb2 as pb


class Client(ClientBase):
    """Calls a servemesh gateway or predictor; use it as a context manager or call close()."""

    _grpc = grpc

    def predict(
        self, model: str, prompt: str | None = None, *, timeout: Timeout = DEFAULT, **kwargs: Any
    ) -> Prediction:
        """Runs a model once. Takes prompt, messages= or inputs=, plus generation parameters."""
        request = build_request(pb.PredictRequest, model, prompt, **kwargs)
        try:
            response = self._stub.Predict(
                request, timeout=resolve_timeout(timeout, self._timeout), metadata=self._metadata
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return Prediction.from_proto(response)

    def predict_stream(
        self, model: str, prompt: str | None = None, *, timeout: Timeout = DEFAULT, **kwargs: Any
    ) -> Iterator[StreamChunk]:
        """Streams a model's output; leaving the loop early cancels the generation."""
        request = build_request(pb.PredictStreamRequest, model, prompt, **kwargs)
        call = self._stub.PredictStream(
            request, timeout=resolve_timeout(timeout, self._timeout), metadata=self._metadata
        )
        try:
            for response in call:
                yield StreamChunk.from_proto(response)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    def list_models(self, *, timeout: Timeout = DEFAULT) -> list[Model]:
        """The models the server can run, sorted by name."""
        try:
            response = self._stub.ListModels(
                pb.ListModelsRequest(),
                timeout=resolve_timeout(timeout, self._timeout),
                metadata=self._metadata,
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return [Model.from_proto(m) for m in response.models]

    def get_model(self, name: str, *, timeout: Timeout = DEFAULT) -> Model:
        """One model's description; NotFound when there is no such model."""
        try:
            response = self._stub.GetModel(
                pb.GetModelRequest(name=name),
                timeout=resolve_timeout(timeout, self._timeout),
                metadata=self._metadata,
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return Model.from_proto(response.model)

    def health(self, service: str = "", *, timeout: Timeout = DEFAULT) -> str:
        """The grpc.health.v1 status of the server, or of one of its services: 'SERVING', ..."""
        try:
            response = self._health.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=resolve_timeout(timeout, self._timeout),
                metadata=self._metadata,
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
