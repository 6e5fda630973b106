"""The blocking client for servemesh.v1.PredictionService."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Unpack

import grpc
from grpc_health.v1 import health_pb2

from servemesh.channel import DEFAULT, ClientBase, Timeout
from servemesh.errors import from_rpc_error
from servemesh.metadata import request_id_in
from servemesh.requests import RequestOptions, build_request
from servemesh.types import Model, Prediction, StreamChunk, health_name
from servemesh.v1 import prediction_service_pb2 as pb


class Client(ClientBase):
    """Calls a servemesh gateway or predictor; use it as a context manager or call close()."""

    _grpc = grpc

    def _unary(self, method: Callable[..., Any], request: Any, timeout: Timeout) -> Any:
        try:
            return method(request, **self._call_options(timeout))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def predict(
        self,
        model: str,
        message: str | None = None,
        *,
        timeout: Timeout = DEFAULT,
        **options: Unpack[RequestOptions],
    ) -> Prediction:
        """Runs a model once on a user `message`, or on prompt=, messages= or inputs=."""
        request = build_request(pb.PredictRequest, model, message, **options)
        response, call = self._unary(self._stub.Predict.with_call, request, timeout)
        request_id = request_id_in(call.initial_metadata(), call.trailing_metadata())
        return Prediction.from_proto(response, request_id)

    def predict_stream(
        self,
        model: str,
        message: str | None = None,
        *,
        timeout: Timeout = DEFAULT,
        **options: Unpack[RequestOptions],
    ) -> Iterator[StreamChunk]:
        """Streams a model's output; leaving the loop early cancels the generation."""
        request = build_request(pb.PredictStreamRequest, model, message, **options)
        call = self._stub.PredictStream(request, **self._call_options(timeout))
        request_id = None
        try:
            for response in call:
                if request_id is None:  # it came before the first message
                    request_id = request_id_in(call.initial_metadata())
                yield StreamChunk.from_proto(response, request_id)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    def list_models(self, *, timeout: Timeout = DEFAULT) -> list[Model]:
        """The models the server can run, sorted by name."""
        response = self._unary(self._stub.ListModels, pb.ListModelsRequest(), timeout)
        return [Model.from_proto(m) for m in response.models]

    def get_model(self, name: str, *, timeout: Timeout = DEFAULT) -> Model:
        """One model's description; NotFound when there is no such model."""
        request = pb.GetModelRequest(name=name)
        return Model.from_proto(self._unary(self._stub.GetModel, request, timeout).model)

    def health(self, service: str = "", *, timeout: Timeout = DEFAULT) -> str:
        """The grpc.health.v1 status of the server, or of one of its services: 'SERVING', ..."""
        request = health_pb2.HealthCheckRequest(service=service)
        return health_name(self._unary(self._health.Check, request, timeout))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
