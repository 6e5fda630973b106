"""A TorchServe backend, reached through TorchServe's own inference and management gRPC APIs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2

from gateway.backends.base import Backend
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
from gateway.config import BackendConfig, ModelConfig
from runtime.server import MAX_MESSAGE_BYTES
from servemesh.errors import NotFound, ServemeshError
from servemesh.v1 import model_pb2
from servemesh.v1 import prediction_service_pb2 as pb
from torchserve_grpc import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc

log = logging.getLogger(__name__)
HEALTH_INTERVAL_S = 1.0
LIST_LIMIT = 1000  # TorchServe's ListModels returns nothing without a limit


class TorchServeBackend(Backend[TorchServeOptions, TorchServeModel]):
    """Predict goes to TorchServe's Predictions; PredictStream goes to StreamPredictions only
    for models configured with `streaming = true` (TorchServe's worker dies when
    StreamPredictions reaches a handler that does not stream), and is answered for other
    models by TorchServe's Predictions, sent as a stream of one message. Every call carries
    TorchServe's token from its key_file.json."""

    def __init__(
        self,
        config: BackendConfig,
        models: list[ModelConfig],
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(config, models, max_message_bytes)
        self._inference_channel = self._channel(config.target)
        self._management_channel = self._channel(self.options.management_target)
        self._inference = inference_pb2_grpc.InferenceAPIsServiceStub(self._inference_channel)
        self._management = management_pb2_grpc.ManagementAPIsServiceStub(self._management_channel)
        self._keys = KeyFile(self.options.key_file)

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

    async def _prediction(self, request: Request, timeout: float | None) -> bytes:
        """TorchServe's unary answer to `request`, of either kind: both carry the same fields
        (codec.REQUEST_FIELDS), so neither is converted into the other."""
        call = self._inference.Predictions(
            self._request(request, stream=False),
            timeout=timeout,
            metadata=self._keys.metadata("inference"),
        )
        try:
            return (await call).prediction
        except grpc.aio.AioRpcError as error:
            raise torchserve_error(error, request.model) from None
        finally:
            call.cancel()

    async def predict(
        self, request: pb.PredictRequest, timeout: float | None
    ) -> pb.PredictResponse:
        prediction = await self._prediction(request, timeout)
        response = pb.PredictResponse(request_id=request.request_id, model=request.model)
        if self.model_options[request.model].task is Task.TEXT_GENERATION:
            response.text_generation.CopyFrom(text_output(prediction))
        else:
            response.inference.CopyFrom(inference_output(prediction))
        return response

    async def predict_stream(
        self, request: pb.PredictStreamRequest, timeout: float | None
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        spec = self.model_options[request.model]
        if not spec.streaming:
            prediction = await self._prediction(request, timeout)
            message = pb.PredictStreamResponse(request_id=request.request_id, model=request.model)
            if spec.task is Task.TEXT_GENERATION:
                text_as_one_chunk(prediction, message)
            else:
                message.inference.CopyFrom(inference_output(prediction))
            yield message
            return
        call = self._inference.StreamPredictions(
            self._request(request, stream=True),
            timeout=timeout,
            metadata=self._keys.metadata("inference"),
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

    async def _management_call(self, method: str, request: object, timeout: float | None) -> str:
        call = getattr(self._management, method)
        response = await call(request, timeout=timeout, metadata=self._keys.metadata("management"))
        return response.msg

    async def registered_models(self, timeout: float | None) -> list[str]:
        msg = await self._management_call(
            "ListModels", management_pb2.ListModelsRequest(limit=LIST_LIMIT), timeout
        )
        return [m["modelName"] for m in json.loads(msg).get("models", [])]

    async def _ready_workers(self, model: str, timeout: float | None) -> int:
        msg = await self._management_call(
            "DescribeModel", management_pb2.DescribeModelRequest(model_name=model), timeout
        )
        return sum(
            w.get("status") == "READY" for version in json.loads(msg) for w in version["workers"]
        )

    async def describe(self, model: str, timeout: float | None) -> model_pb2.ModelInfo:
        spec = self.model_options[model]
        info = model_pb2.ModelInfo(
            name=model,
            backend_kind=model_pb2.BACKEND_KIND_TORCHSERVE,
            capabilities=spec.capabilities(),
            limits=spec.model_limits(),
        )
        try:
            ready = await self._ready_workers(model, timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND or "not found" in (error.details() or ""):
                registered = await self.registered_models(timeout)
                raise NotFound(
                    f"model {model!r} is not registered in TorchServe; it has: "
                    f"{', '.join(registered) or 'no models'}",
                    reason="MODEL_NOT_FOUND",
                ) from None
            raise
        info.ready = ready > 0
        info.description = f"TorchServe model ({spec.task.value}), {ready} worker(s) ready"
        return info

    async def _healthy(self) -> bool:
        ping = await self._inference.Ping(
            empty_pb2.Empty(), timeout=5, metadata=self._keys.metadata("inference")
        )
        if json.loads(ping.health).get("status") != "Healthy":
            return False
        registered = set(await self.registered_models(5))
        ready = await asyncio.gather(
            *(self._ready_workers(m, 5) for m in self.models if m in registered)
        )
        return all(ready)

    async def watch_health(self) -> AsyncIterator[bool]:
        # TorchServe has no health Watch: poll its Ping and its models' workers.
        while True:
            try:
                yield await self._healthy()
            except (grpc.aio.AioRpcError, ServemeshError, ValueError) as error:
                log.debug("TorchServe %s is not healthy: %s", self.name, error)
                yield False
            await asyncio.sleep(HEALTH_INTERVAL_S)

    async def close(self) -> None:
        await asyncio.gather(self._inference_channel.close(), self._management_channel.close())
