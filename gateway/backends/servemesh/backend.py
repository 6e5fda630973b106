"""A backend that itself speaks servemesh.v1, such as the llama predictor: calls pass through,
to the least busy serving replica, with a retry on another replica where that is safe."""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from gateway import metrics
from gateway.backends.base import (
    Backend,
    BackendOptions,
    Metadata,
    NoModelOptions,
    parse_backend_table,
    parse_model_table,
)
from gateway.backends.servemesh.replicas import Replica, ReplicaSet, grpc_health_watch
from gateway.backends.servemesh.retry_budget import RetryBudget
from gateway.config import POSITIVE, BackendConfig, ConfigError, ModelConfig
from runtime.server import MAX_MESSAGE_BYTES
from servemesh.channel import auth_metadata
from servemesh.errors import Unavailable
from servemesh.v1 import model_pb2
from servemesh.v1 import prediction_service_pb2 as pb
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@dataclass(frozen=True, kw_only=True)
class ServemeshOptions(BackendOptions):
    """The options of a `kind = "servemesh"` backend table."""

    resolve_interval_s: float = field(default=10.0, metadata=POSITIVE)  # dns:/// re-resolution
    max_attempts: int = field(default=3, metadata=POSITIVE)  # tries of one unary call
    api_key_env: str = ""  # the environment variable that holds the backend's key


class ServemeshBackend(Backend[ServemeshOptions, NoModelOptions]):
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
        self._metadata = _api_key_metadata(config.name, self.options.api_key_env)
        self._replicas = ReplicaSet(
            config.name,
            config.targets,
            self._channel,
            grpc_health_watch(self._metadata),
            resolve_interval_s=self.options.resolve_interval_s,
        )
        self._max_attempts = self.options.max_attempts
        self._budget = RetryBudget()
        self._stubs: weakref.WeakKeyDictionary[Replica, pb_grpc.PredictionServiceStub] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def parse_options(cls, config: BackendConfig) -> ServemeshOptions:
        return parse_backend_table(ServemeshOptions, config)

    @classmethod
    def parse_model_options(cls, model: ModelConfig) -> NoModelOptions:
        return parse_model_table(NoModelOptions, model, "servemesh")

    def _stub(self, replica: Replica) -> pb_grpc.PredictionServiceStub:
        stub = self._stubs.get(replica)
        if stub is None:
            stub = self._stubs[replica] = pb_grpc.PredictionServiceStub(replica.channel)
        return stub

    async def _unary(
        self, method: str, request: Message, timeout: float | None, metadata: Metadata = ()
    ) -> Any:
        """Calls unary `method` on the least busy replica, then on others while retrying is
        safe and allowed; every try carries `metadata` after the backend's key."""
        attempts = _Attempts(self, timeout)
        metadata = self._metadata + metadata
        while True:
            replica = attempts.next_replica()
            call = getattr(self._stub(replica), method)(
                request, timeout=attempts.remaining(), metadata=metadata
            )
            with self._replicas.in_flight(replica):
                try:
                    return await call
                except grpc.aio.AioRpcError as error:
                    if not attempts.retry_after(replica, error):
                        raise
                finally:
                    call.cancel()  # a no-op once done; stops the backend when our caller left

    async def predict(
        self, request: pb.PredictRequest, timeout: float | None, metadata: Metadata = ()
    ) -> pb.PredictResponse:
        return await self._unary("Predict", request, timeout, metadata)

    async def predict_stream(
        self, request: pb.PredictStreamRequest, timeout: float | None, metadata: Metadata = ()
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        attempts = _Attempts(self, timeout)
        metadata = self._metadata + metadata
        while True:
            replica = attempts.next_replica()
            relayed = 0
            with self._replicas.in_flight(replica):
                call = self._stub(replica).PredictStream(
                    request, timeout=attempts.remaining(), metadata=metadata
                )
                try:
                    async for response in call:
                        relayed += 1
                        yield response
                    return
                except grpc.aio.AioRpcError as error:
                    if relayed == 0 and attempts.retry_after(replica, error):
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


def _api_key_metadata(backend: str, name: str) -> tuple[tuple[str, str], ...]:
    """The key the backend wants, from the environment variable its `api_key_env` names."""
    if not name:
        return ()
    key = os.environ.get(name)
    if not key:
        raise ConfigError(f"backends.{backend}.api_key_env names {name}, which is not set")
    return auth_metadata(key)


class _Attempts:
    """The tries of one call: each on the least busy replica not tried yet, the next only
    after UNAVAILABLE, within max_attempts, the retry budget and the caller's deadline."""

    def __init__(self, backend: ServemeshBackend, timeout: float | None) -> None:
        self._backend = backend
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._tried: list[Replica] = []
        backend._budget.record_call()

    def next_replica(self) -> Replica:
        return self._backend._replicas.pick(avoid=self._tried)

    def remaining(self) -> float | None:
        """The deadline left for the next try, in seconds."""
        return None if self._deadline is None else max(self._deadline - time.monotonic(), 0.0)

    def retry_after(self, replica: Replica, error: grpc.aio.AioRpcError) -> bool:
        """Whether to try again after `error` from `replica` (counted and logged if so)."""
        self._tried.append(replica)
        backend = self._backend
        if not (
            error.code() == _UNAVAILABLE
            and len(self._tried) < backend._max_attempts
            and (self._deadline is None or time.monotonic() < self._deadline)
            and backend._budget.try_retry()
        ):
            return False
        metrics.RETRIES.labels(backend.name).inc()
        log.info(
            "backend %s: retrying on another replica after %s from %s: %s",
            backend.name,
            error.code().name,
            replica.address,
            error.details(),
        )
        return True
