"""A backend that itself speaks servemesh.v1, such as the llama predictor: calls pass through,
to the least busy serving replica, with a retry on another replica where that is safe."""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import Message

from gateway import metrics
from gateway.backends.base import Backend
from gateway.config import BackendConfig, ConfigError, ModelConfig
from gateway.replicas import Replica, ReplicaSet
from gateway.retry_budget import RetryBudget
from runtime.server import MAX_MESSAGE_BYTES
from servemesh.channel import auth_metadata
from servemesh.errors import Unavailable
from servemesh.v1 import model_pb2
from servemesh.v1 import prediction_service_pb2 as pb
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class ServemeshBackend(Backend):
    """Forwards servemesh.v1 calls unchanged, with the caller's deadline.

    A unary call that fails with UNAVAILABLE is tried again on another replica, within
    `max_attempts`, the retry budget and the caller's deadline: a prediction has no side
    effects and nothing of the failed attempt reached the caller. A stream is retried only
    while no message has reached the caller; after that it ends with UNAVAILABLE.
    """

    def __init__(
        self,
        config: BackendConfig,
        models: list[ModelConfig],
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(config, models, max_message_bytes)
        options = config.options
        self._metadata = _api_key_metadata(config)
        self._replicas = ReplicaSet(
            config.name,
            config.targets,
            self._channel,
            resolve_interval_s=float(options.get("resolve_interval_s", 10.0)),
            metadata=self._metadata,
        )
        self._max_attempts = int(options.get("max_attempts", 3))
        self._budget = RetryBudget()
        self._stubs: weakref.WeakKeyDictionary[Replica, pb_grpc.PredictionServiceStub] = (
            weakref.WeakKeyDictionary()
        )

    def _stub(self, replica: Replica) -> pb_grpc.PredictionServiceStub:
        stub = self._stubs.get(replica)
        if stub is None:
            stub = self._stubs[replica] = pb_grpc.PredictionServiceStub(replica.channel)
        return stub

    def _may_retry(
        self, error: grpc.aio.AioRpcError, attempts: int, deadline: float | None
    ) -> bool:
        return (
            error.code() == _UNAVAILABLE
            and attempts < self._max_attempts
            and (deadline is None or time.monotonic() < deadline)
            and self._budget.try_retry()
        )

    async def _unary(self, method: str, request: Message, timeout: float | None) -> Any:
        """Calls unary `method` on the least busy replica, then on others while retrying is
        safe and allowed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._budget.record_call()
        tried: list[Replica] = []
        while True:
            replica = self._replicas.pick(avoid=tried)
            call = getattr(self._stub(replica), method)(
                request, timeout=_remaining(deadline), metadata=self._metadata
            )
            with self._replicas.in_flight(replica):
                try:
                    return await call
                except grpc.aio.AioRpcError as error:
                    tried.append(replica)
                    if not self._may_retry(error, len(tried), deadline):
                        raise
                    metrics.RETRIES.labels(self.name).inc()
                    log.info(
                        "backend %s: retrying on another replica after %s from %s: %s",
                        self.name,
                        error.code().name,
                        replica.address,
                        error.details(),
                    )
                finally:
                    call.cancel()  # a no-op once done; stops the backend when our caller left

    async def predict(
        self, request: pb.PredictRequest, timeout: float | None
    ) -> pb.PredictResponse:
        return await self._unary("Predict", request, timeout)

    async def predict_stream(
        self, request: pb.PredictStreamRequest, timeout: float | None
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._budget.record_call()
        tried: list[Replica] = []
        while True:
            replica = self._replicas.pick(avoid=tried)
            relayed = 0
            with self._replicas.in_flight(replica):
                call = self._stub(replica).PredictStream(
                    request, timeout=_remaining(deadline), metadata=self._metadata
                )
                try:
                    async for response in call:
                        relayed += 1
                        yield response
                    return
                except grpc.aio.AioRpcError as error:
                    tried.append(replica)
                    if relayed == 0 and self._may_retry(error, len(tried), deadline):
                        metrics.RETRIES.labels(self.name).inc()
                        continue
                    if relayed and error.code() == _UNAVAILABLE:
                        raise Unavailable(
                            f"replica {replica.address} of backend {self.name!r} failed after "
                            f"{relayed} messages of this stream ({error.details()}); a stream "
                            "cannot resume elsewhere, so send the request again",
                            reason="STREAM_BROKEN",
                            metadata={"backend": self.name, "replica": replica.address},
                        ) from None
                    raise
                finally:
                    call.cancel()  # a no-op once done; stops the backend when our caller left

    async def describe(self, model: str, timeout: float | None) -> model_pb2.ModelInfo:
        response = await self._unary("GetModel", pb.GetModelRequest(name=model), timeout)
        return response.model

    async def watch_health(self) -> AsyncIterator[bool]:
        async for serving in self._replicas.serving_changes():
            yield serving

    async def close(self) -> None:
        await self._replicas.close()


def _api_key_metadata(config: BackendConfig) -> tuple[tuple[str, str], ...]:
    """The key the backend wants, from the environment variable its `api_key_env` names."""
    name = config.options.get("api_key_env")
    if not name:
        return ()
    key = os.environ.get(name)
    if not key:
        raise ConfigError(f"backends.{config.name}.api_key_env names {name}, which is not set")
    return auth_metadata(key)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)
