"""A backend that itself speaks servemesh.v1, such as the llama predictor: calls pass through,
to the least busy serving replica, with a retry on another replica where that is safe."""

from __future__ import annotations

import logging
import operator
import os
import time
import weakref
from collections.abc import AsyncIterator, Callable
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
from gateway.relay import PREDICT_METHOD, PREDICT_STREAM_METHOD
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


class _ReplicaCalls:
    """What the gateway calls on one replica: the contract's stub, on messages, and Predict and
    PredictStream on the bytes of messages, for requests relayed as they came (gateway.relay)."""

    __slots__ = ("predict_bytes", "predict_stream_bytes", "stub")

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = pb_grpc.PredictionServiceStub(channel)
        # No serializers: bytes in, bytes out. Registered with the channel as the generated
        # stub's methods are, which spares gRPC a lookup of the method's name on every call.
        self.predict_bytes = channel.unary_unary(PREDICT_METHOD, _registered_method=True)
        self.predict_stream_bytes = channel.unary_stream(
            PREDICT_STREAM_METHOD, _registered_method=True
        )


# Which of a replica's calls each kind of call makes.
_PREDICT = operator.attrgetter("stub.Predict")
_PREDICT_STREAM = operator.attrgetter("stub.PredictStream")
_GET_MODEL = operator.attrgetter("stub.GetModel")
_PREDICT_BYTES = operator.attrgetter("predict_bytes")
_PREDICT_STREAM_BYTES = operator.attrgetter("predict_stream_bytes")


class ServemeshBackend(Backend[ServemeshOptions, NoModelOptions]):
    """Forwards servemesh.v1 calls unchanged, with the caller's deadline; requests that came
    as servemesh.v1 go on as the bytes they came in (`relays_bytes`).

    A unary call that fails with UNAVAILABLE is tried again on another replica, within
    `max_attempts`, the retry budget and the caller's deadline: a prediction has no side
    effects and nothing of the failed attempt reached the caller. A stream is retried only
    while no message has reached the caller; after that it ends with UNAVAILABLE.
    """

    relays_bytes = True

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
        self._replica_calls: weakref.WeakKeyDictionary[Replica, _ReplicaCalls] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def parse_options(cls, config: BackendConfig) -> ServemeshOptions:
        return parse_backend_table(ServemeshOptions, config)

    @classmethod
    def parse_model_options(cls, model: ModelConfig) -> NoModelOptions:
        return parse_model_table(NoModelOptions, model, "servemesh")

    def _calls(self, replica: Replica) -> _ReplicaCalls:
        calls = self._replica_calls.get(replica)
        if calls is None:
            calls = self._replica_calls[replica] = _ReplicaCalls(replica.channel)
        return calls

    async def _unary(
        self,
        method: Callable[[_ReplicaCalls], Any],
        request: Message | bytes,
        timeout: float | None,
        metadata: Metadata = (),
    ) -> Any:
        """Calls unary `method` (of a replica's calls) on the least busy replica, then on
        others while retrying is safe and allowed; every try carries `metadata` after the
        backend's key."""
        attempts = _Attempts(self, timeout)
        metadata = self._metadata + metadata
        while True:
            replica = attempts.next_replica()
            call = method(self._calls(replica))(
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
        return await self._unary(_PREDICT, request, timeout, metadata)

    async def predict_serialized(
        self, body: bytes, timeout: float | None, metadata: Metadata = ()
    ) -> bytes:
        return await self._unary(_PREDICT_BYTES, body, timeout, metadata)

    def predict_stream(
        self, request: pb.PredictStreamRequest, timeout: float | None, metadata: Metadata = ()
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        return self._stream(_PREDICT_STREAM, request, timeout, metadata)

    def predict_stream_serialized(
        self, body: bytes, timeout: float | None, metadata: Metadata = ()
    ) -> AsyncIterator[bytes]:
        return self._stream(_PREDICT_STREAM_BYTES, body, timeout, metadata)

    async def _stream(
        self,
        method: Callable[[_ReplicaCalls], Any],
        request: Message | bytes,
        timeout: float | None,
        metadata: Metadata,
    ) -> AsyncIterator[Any]:
        """Streams `method` (of a replica's calls) from the least busy replica; another
        replica is tried only while no message has reached the caller."""
        attempts = _Attempts(self, timeout)
        metadata = self._metadata + metadata
        while True:
            replica = attempts.next_replica()
            relayed = 0
            with self._replicas.in_flight(replica):
                call = method(self._calls(replica))(
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
        response = await self._unary(_GET_MODEL, pb.GetModelRequest(name=model), timeout)
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
