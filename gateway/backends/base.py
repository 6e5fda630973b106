"""The interface every backend implements; the gateway knows nothing else about a backend."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc

from gateway.admission import Admission
from gateway.backends.channels import open_channel
from gateway.config import NON_NEGATIVE, BackendConfig, ConfigError, ModelConfig, parse_options
from runtime.server import MAX_MESSAGE_BYTES
from servemesh.v1 import model_pb2
from servemesh.v1 import prediction_service_pb2 as pb

# Keys of a [models.NAME] table that the mesh config reads itself, before a backend does.
ROUTE_KEYS = ("backend", "backend_model")
# gRPC metadata of a call from the gateway: the request id and the W3C trace context.
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class BackendOptions:
    """The options of a [backends.NAME] table that every kind takes: its admission limits
    (0: none) and TLS to its servers."""

    max_concurrency: int = field(default=0, metadata=NON_NEGATIVE)
    max_queue: int = field(default=0, metadata=NON_NEGATIVE)
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_server_name: str = ""  # the name in the server's certificate, when not the address's


@dataclass(frozen=True)
class NoModelOptions:
    """The model options of a kind that reads none: any key in the model's table is refused."""


OptionsT = TypeVar("OptionsT", bound=BackendOptions)
ModelOptionsT = TypeVar("ModelOptionsT")


class Backend(ABC, Generic[OptionsT, ModelOptionsT]):
    """A model server reached over the network.

    Requests arrive with `model` already set to the backend's name for the model. A failed
    backend call raises grpc.aio.AioRpcError (passed through to the client as it is) or a
    servemesh error. `timeout` is the caller's remaining deadline in seconds, or None;
    `metadata` goes with the backend call (x-request-id, traceparent), beside the backend's
    own keys.

    Each kind declares its options as frozen dataclasses (`parse_options`,
    `parse_model_options`), so a key it does not know is refused at start-up.
    """

    def __init__(
        self,
        config: BackendConfig,
        models: list[ModelConfig],
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.config = config
        self.options: OptionsT = self.parse_options(config)
        self.model_options: dict[str, ModelOptionsT] = self.parse_models(models)
        self._max_message_bytes = max_message_bytes  # the gateway's own, on its channels too
        self.name = config.name
        self.models = {m.backend_model: m for m in models}
        self.admission = Admission(
            config.name,
            max_concurrency=self.options.max_concurrency,
            max_queue=self.options.max_queue,
        )

    @classmethod
    @abstractmethod
    def parse_options(cls, config: BackendConfig) -> OptionsT:
        """The kind's typed options from `config`; a ConfigError names what is wrong."""

    @classmethod
    @abstractmethod
    def parse_model_options(cls, model: ModelConfig) -> ModelOptionsT:
        """The kind's typed options of one model routed to it."""

    @classmethod
    def parse_models(cls, models: list[ModelConfig]) -> dict[str, ModelOptionsT]:
        """Each model's options by its name at the backend. Two public names may route to the
        same backend model only with the same options: the backend sees the backend name
        alone, so it could not tell which of two sets of options a request meant."""
        parsed: dict[str, ModelOptionsT] = {}
        first: dict[str, str] = {}
        for model in models:
            options = cls.parse_model_options(model)
            name = model.backend_model
            if name in parsed and parsed[name] != options:
                raise ConfigError(
                    f"models.{first[name]} and models.{model.name} both route to {name!r} at "
                    f"backend {model.backend!r} with different options; give them the same "
                    "options, or serve the model twice at the backend under two names"
                )
            parsed[name], first[name] = options, first.get(name, model.name)
        return parsed

    def _channel(self, address: str) -> grpc.aio.Channel:
        """A channel to one of the backend's addresses, with its TLS options and the
        gateway's message size."""
        tls: dict[str, Any] = {
            "tls_ca": self.options.tls_ca,
            "tls_cert": self.options.tls_cert,
            "tls_key": self.options.tls_key,
            "tls_server_name": self.options.tls_server_name,
        }
        return open_channel(address, tls, self._max_message_bytes)

    @abstractmethod
    async def predict(
        self, request: pb.PredictRequest, timeout: float | None, metadata: Metadata = ()
    ) -> pb.PredictResponse:
        """Runs one unary prediction."""

    @abstractmethod
    def predict_stream(
        self, request: pb.PredictStreamRequest, timeout: float | None, metadata: Metadata = ()
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        """Streams a prediction; closing the iterator cancels the backend's work."""

    # Whether the backend speaks servemesh.v1 itself and so takes requests and gives answers as
    # their bytes (predict_serialized, predict_stream_serialized; see gateway.relay).
    relays_bytes = False

    async def predict_serialized(
        self, body: bytes, timeout: float | None, metadata: Metadata = ()
    ) -> bytes:
        """Predict on a serialized PredictRequest, answering a serialized PredictResponse;
        only where `relays_bytes`."""
        raise NotImplementedError(f"backend {self.name!r} does not relay bytes")

    def predict_stream_serialized(
        self, body: bytes, timeout: float | None, metadata: Metadata = ()
    ) -> AsyncIterator[bytes]:
        """PredictStream on a serialized PredictStreamRequest, streaming serialized
        PredictStreamResponses; only where `relays_bytes`."""
        raise NotImplementedError(f"backend {self.name!r} does not relay bytes")

    @abstractmethod
    async def describe(self, model: str, timeout: float | None) -> model_pb2.ModelInfo:
        """The backend's description of one of its models."""

    @abstractmethod
    def watch_health(self) -> AsyncIterator[bool]:
        """Yields whether the backend serves, each time that may have changed; never ends."""

    @abstractmethod
    async def close(self) -> None:
        """Releases connections."""


def parse_model_table(cls: type[ModelOptionsT], model: ModelConfig, kind: str) -> ModelOptionsT:
    """`cls` from a [models.NAME] table routed to a backend of `kind`."""
    return parse_options(
        cls, model.options, f"models.{model.name}", f"a model of a {kind} backend", ROUTE_KEYS
    )


def parse_backend_table(cls: type[OptionsT], config: BackendConfig) -> OptionsT:
    """`cls` from a [backends.NAME] table; `kind` and the targets are read already."""
    return parse_options(
        cls,
        config.options,
        f"backends.{config.name}",
        f"a {config.kind} backend",
        also_known=("kind", "target", "targets"),
    )
