"""A TorchServe backend, reached through TorchServe's own inference and management gRPC APIs."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import grpc

from gateway.backends.base import Backend, Metadata
from gateway.backends.servemesh.replicas import Replica, ReplicaSet
from gateway.backends.torchserve.codec import (
    Request,
    inference_output,
    text_as_one_chunk,
    text_chunk,
    text_output,
    torchserve_input,
)
from gateway.backends.torchserve.errors import torchserve_error
from gateway.backends.torchserve.key_file import KeyFile
from gateway.backends.torchserve.options import (
    Task,
    TorchServeModel,
    TorchServeOptions,
    parse_torchserve_model,
    parse_torchserve_options,
)
from gateway.backends.torchserve.replica import TorchServeReplica, torchserve_health
from gateway.config import BackendConfig, ModelConfig
from runtime.server import MAX_MESSAGE_BYTES
from servemesh.errors import NotFound, Unavailable
from servemesh.v1 import model_pb2
from servemesh.v1 import prediction_service_pb2 as pb
from torchserve_grpc import inference_pb2

log = logging.getLogger(__name__)


class TorchServeBackend(Backend[TorchServeOptions, TorchServeModel]):
    """Predict goes to TorchServe's Predictions; PredictStream goes to StreamPredictions only
    for models configured with `streaming = true` (TorchServe's worker dies when
    StreamPredictions reaches a handler that does not stream), and is answered for other
    models by TorchServe's Predictions, sent as a stream of one message. Every call carries
    TorchServe's token from its key_file.json, where there is one.

    Several TorchServes (targets, or a dns:/// name) are replicas: each call goes to the
    serving one with the fewest calls outstanding, each one's health polled on its own."""

    def __init__(
        self,
        config: BackendConfig,
        models: list[ModelConfig],
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(config, models, max_message_bytes)
        self._keys = KeyFile(self.options.key_file)
        self._replicas = ReplicaSet(
            config.name,
            config.targets,
            self._connect,
            torchserve_health(lambda: self.models),
            resolve_interval_s=self.options.resolve_interval_s,
        )

    def _connect(self, address: str) -> TorchServeReplica:
        management = self.options.management_address(address)
        return TorchServeReplica(self._channel(address), self._channel(management), self._keys)

    @contextlib.contextmanager
    def _replica(self, model: str) -> Iterator[TorchServeReplica]:
        """The replica that takes the next call for `model`, counted as busy while the call
        runs: one with a ready worker for the model, else any whose TorchServe answers (it
        queues the call until a worker is back), so one model's dead worker does not take the
        backend's other models out with it."""
        replica: Replica[TorchServeReplica]
        try:
            replica = self._replicas.pick(eligible=lambda r: model in r.channel.ready_models)
        except Unavailable:
            replica = self._replicas.pick(eligible=lambda r: r.channel.answers)
        with self._replicas.in_flight(replica):
            yield replica.channel

    @classmethod
    def parse_options(cls, config: BackendConfig) -> TorchServeOptions:
        return parse_torchserve_options(config)

    @classmethod
    def parse_model_options(cls, model: ModelConfig) -> TorchServeModel:
        return parse_torchserve_model(model)

    def _request(self, request: Request, stream: bool) -> inference_pb2.PredictionsRequest:
        spec = self.model_options[request.model]
        return inference_pb2.PredictionsRequest(
            model_name=request.model, input=torchserve_input(request, spec, stream)
        )

    async def _prediction(
        self, request: Request, timeout: float | None, metadata: Metadata
    ) -> bytes:
        """TorchServe's unary answer to `request`, of either kind: both carry the same fields
        (codec.REQUEST_FIELDS), so neither is converted into the other. TorchServe reads
        nothing of `metadata` but its key; the rest goes along for whatever is in between."""
        with self._replica(request.model) as replica:
            call = replica.inference.Predictions(
                self._request(request, stream=False),
                timeout=timeout,
                metadata=self._keys.metadata("inference") + metadata,
            )
            try:
                return (await call).prediction
            except grpc.aio.AioRpcError as error:
                raise torchserve_error(error, request.model) from None
            finally:
                call.cancel()

    async def predict(
        self, request: pb.PredictRequest, timeout: float | None, metadata: Metadata = ()
    ) -> pb.PredictResponse:
        prediction = await self._prediction(request, timeout, metadata)
        response = pb.PredictResponse(request_id=request.request_id, model=request.model)
        if self.model_options[request.model].task is Task.TEXT_GENERATION:
            response.text_generation.CopyFrom(text_output(prediction))
        else:
            response.inference.CopyFrom(inference_output(prediction))
        return response

    async def predict_stream(
        self, request: pb.PredictStreamRequest, timeout: float | None, metadata: Metadata = ()
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        spec = self.model_options[request.model]
        if not spec.streaming:
            prediction = await self._prediction(request, timeout, metadata)
            message = pb.PredictStreamResponse(request_id=request.request_id, model=request.model)
            if spec.task is Task.TEXT_GENERATION:
                text_as_one_chunk(prediction, message)
            else:
                message.inference.CopyFrom(inference_output(prediction))
            yield message
            return
        with self._replica(request.model) as replica:
            call = replica.inference.StreamPredictions(
                self._request(request, stream=True),
                timeout=timeout,
                metadata=self._keys.metadata("inference") + metadata,
            )
            try:
                async for piece in call:
                    message = pb.PredictStreamResponse(
                        request_id=request.request_id, model=request.model
                    )
                    if spec.task is Task.TEXT_GENERATION:
                        text_chunk(piece.prediction, message)
                    else:
                        message.inference.CopyFrom(inference_output(piece.prediction))
                    yield message
            except grpc.aio.AioRpcError as error:
                raise torchserve_error(error, request.model) from None
            finally:
                call.cancel()

    async def describe(self, model: str, timeout: float | None) -> model_pb2.ModelInfo:
        spec = self.model_options[model]
        info = model_pb2.ModelInfo(
            name=model,
            backend_kind=model_pb2.BACKEND_KIND_TORCHSERVE,
            capabilities=spec.capabilities(),
            limits=spec.model_limits(),
        )
        with self._replica(model) as replica:
            try:
                ready = await replica.ready_workers(model, timeout)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND and "not found" not in (
                    error.details() or ""
                ):
                    raise
                registered = await replica.registered_models(timeout)
                raise NotFound(
                    f"model {model!r} is not registered in TorchServe; it has: "
                    f"{', '.join(registered) or 'no models'}",
                    reason="MODEL_NOT_FOUND",
                ) from None
        info.ready = ready > 0
        info.description = f"TorchServe model ({spec.task.value}), {ready} worker(s) ready"
        return info

    def watch_health(self) -> AsyncIterator[bool]:
        return self._replicas.serving_changes()

    async def close(self) -> None:
        await self._replicas.close()
