"""The interface every backend implements; the gateway knows nothing else about a backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

import grpc

from gateway.admission import Admission
from gateway.backends.channels import open_channel
from gateway.config import BackendConfig, ModelConfig
from runtime.server import MAX_MESSAGE_BYTES
from servemesh.v1 import model_pb2
from servemesh.v1 import prediction_service_pb2 as pb


class Backend(ABC):
    """A model server reached over the network.

    Requests arrive with `model` already set to the backend's name for the model. A failed
    backend call raises grpc.aio.AioRpcError (passed through to the client as it is) or a
    servemesh error. `timeout` is the caller's remaining deadline in seconds, or None.
    """

    def __init__(
        self,
        config: BackendConfig,
        models: list[ModelConfig],
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.config = config
        self._max_message_bytes = max_message_bytes  # the gateway's own, on its channels too
        self.name = config.name
        self.models = {m.backend_model: m for m in models}
        self.admission = Admission(
            config.name,
            max_concurrency=int(config.options.get("max_concurrency", 0)),
            max_queue=int(config.options.get("max_queue", 0)),
        )

    def _channel(self, address: str) -> grpc.aio.Channel:
        """A channel to one of the backend's addresses, with its TLS options and the
        gateway's message size."""
        return open_channel(address, self.config.options, self._max_message_bytes)

    @abstractmethod
    async def predict(
        self, request: pb.PredictRequest, timeout: float | None
    ) -> pb.PredictResponse:
        """Runs one unary prediction."""

    @abstractmethod
    def predict_stream(
        self, request: pb.PredictStreamRequest, timeout: float | None
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        """Streams a prediction; closing the iterator cancels the backend's work."""

    @abstractmethod
    async def describe(self, model: str, timeout: float | None) -> model_pb2.ModelInfo:
        """The backend's description of one of its models."""

    @abstractmethod
    def watch_health(self) -> AsyncIterator[bool]:
        """Yields whether the backend serves, each time that may have changed; never ends."""

    @abstractmethod
    async def close(self) -> None:
        """Releases connections."""
