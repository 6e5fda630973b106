"""A TorchServe backend, reached through TorchServe's own inference and management gRPC APIs.

Predict goes to Predictions; PredictStream goes to StreamPredictions only for models
configured with `streaming = true` (TorchServe's worker dies when StreamPredictions reaches a
handler that does not stream), and is answered for other models by wrapping the unary result
as a stream of one message. Every call carries TorchServe's token from its key_file.json.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2

from gateway.backends.base import Backend
from gateway.backends.torchserve_codec import (
    Task,
    TorchServeModel,
    inference_output,
    text_chunk,
    text_output,
    torchserve_input,
)
from gateway.config import BackendConfig, ConfigError, ModelConfig
from runtime.server import MAX_MESSAGE_BYTES
from servemesh.errors import Internal, NotFound, ServemeshError, Unavailable, error_class
from servemesh.v1 import model_pb2
from servemesh.v1 import prediction_service_pb2 as pb
from torchserve_grpc import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc

log = logging.getLogger(__name__)
HEALTH_INTERVAL_S = 1.0
LIST_LIMIT = 1000  # TorchServe's ListModels returns nothing without a limit


class KeyFile:
    """TorchServe's key_file.json, read again whenever TorchServe rewrites it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: float | None = None
        self._keys: dict[str, str] = {}

    def metadata(self, api: str) -> tuple[tuple[str, str], ...]:
        """The authorization header for TorchServe's `inference` or `management` API."""
        if not self.path:
            return ()
        try:
            stamp = os.stat(self.path).st_mtime
            if stamp != self._stamp:
                with open(self.path) as f:
                    self._keys = {k: v["key"] for k, v in json.load(f).items()}
                self._stamp = stamp
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise Unavailable(
                f"cannot read TorchServe's key file {self.path}: {error}; is TorchServe running?",
                reason="BACKEND_KEY_MISSING",
            ) from None
        return (("authorization", f"Bearer {self._keys.get(api, '')}"),)


def _torchserve_error(error: grpc.aio.AioRpcError, model: str) -> ServemeshError:
    """TorchServe's status in servemesh's terms; its Java exception line is dropped."""
    code = error.code()
    message = (error.details() or "").split("\norg.pytorch.serve.", 1)[0].strip()
    if code == grpc.StatusCode.INTERNAL and message.startswith("Model not found"):
        return NotFound(
            f"model {model!r} is not registered in TorchServe ({message})",
            reason="MODEL_NOT_FOUND",
            metadata={"model": model},
        )
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return Internal(
            f"TorchServe refused the gateway's token ({message}); check the backend's key_file",
            reason="BACKEND_AUTH_FAILED",
        )
    if message.startswith("Worker died"):
        # The worker that held this request died (crashed, killed, or silent past
        # responseTimeout). TorchServe says INTERNAL, or RESOURCE_EXHAUSTED after a SIGKILL
        # (it takes exit 137 for the OOM killer), and neither tells a client to retry; but
        # TorchServe restarts the worker (2 to 4 s measured) and queues new calls meanwhile,
        # so this is UNAVAILABLE, like a connection lost mid-call. The price: a request that
        # itself kills the worker is resent by a retrying client, up to its max_attempts.
        return Unavailable(
            f"TorchServe's worker for model {model!r} died while it ran this request; TorchServe "
            f"restarts it, so retry after a back-off (TorchServe: {message})",
            reason="BACKEND_WORKER_DIED",
            metadata={"model": model, "torchserve_code": code.name},
        )
    if code == grpc.StatusCode.INTERNAL and "no worker" in message:
        return Unavailable(f"TorchServe: {message}", reason="BACKEND_WORKER_UNAVAILABLE")
    return error_class(code)(f"TorchServe: {message}", reason="BACKEND_ERROR")


class TorchServeBackend(Backend):
    def __init__(
        self,
        config: BackendConfig,
        models: list[ModelConfig],
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(config, models, max_message_bytes)
        try:
            management_target = config.options["management_target"]
        except KeyError:
            raise ConfigError(f"backends.{config.name} needs management_target") from None
        self._inference_channel = self._channel(config.target)
        self._management_channel = self._channel(management_target)
        self._inference = inference_pb2_grpc.InferenceAPIsServiceStub(self._inference_channel)
        self._management = management_pb2_grpc.ManagementAPIsServiceStub(self._management_channel)
        self._keys = KeyFile(config.options.get("key_file", ""))
        self._specs = {name: TorchServeModel.from_config(m) for name, m in self.models.items()}

    def _request(
        self, request: pb.PredictRequest | pb.PredictStreamRequest, stream: bool
    ) -> inference_pb2.PredictionsRequest:
        spec = self._specs[request.model]
        return inference_pb2.PredictionsRequest(
            model_name=request.model, input=torchserve_input(request, spec, stream)
        )

    async def predict(
        self, request: pb.PredictRequest, timeout: float | None
    ) -> pb.PredictResponse:
        ts_request = self._request(request, stream=False)
        call = self._inference.Predictions(
            ts_request, timeout=timeout, metadata=self._keys.metadata("inference")
        )
        try:
            prediction = (await call).prediction
        except grpc.aio.AioRpcError as error:
            raise _torchserve_error(error, request.model) from None
        finally:
            call.cancel()
        response = pb.PredictResponse(request_id=request.request_id, model=request.model)
        if self._specs[request.model].task is Task.TEXT_GENERATION:
            response.text_generation.CopyFrom(text_output(prediction))
        else:
            response.inference.CopyFrom(inference_output(prediction))
        return response

    async def predict_stream(
        self, request: pb.PredictStreamRequest, timeout: float | None
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        spec = self._specs[request.model]
        if not spec.streaming:
            # The two request messages share their fields and numbers.
            unary = pb.PredictRequest.FromString(request.SerializeToString())
            result = await self.predict(unary, timeout)
            message = pb.PredictStreamResponse(request_id=result.request_id, model=result.model)
            if result.HasField("text_generation"):
                out = result.text_generation
                message.text_delta.text = out.text
                message.text_delta.token_count = out.usage.completion_tokens
                message.finish_reason, message.usage = out.finish_reason, out.usage
            else:
                message.inference.CopyFrom(result.inference)
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
            raise _torchserve_error(error, request.model) from None
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
        spec = self._specs[model]
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
