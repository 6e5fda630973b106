"""One TorchServe of a backend: its inference and management channels, and its health as
TorchServe tells it (Ping, and the workers of the backend's models), for the ReplicaSet."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Collection

import grpc
from google.protobuf import empty_pb2

from gateway.backends.servemesh.replicas import HealthSource, Replica
from gateway.backends.torchserve.key_file import KeyFile
from servemesh.errors import ServemeshError
from torchserve_grpc import inference_pb2_grpc, management_pb2, management_pb2_grpc

HEALTH_INTERVAL_S = 1.0
LIST_LIMIT = 1000  # TorchServe's ListModels returns nothing without a limit


class TorchServeReplica:
    """The channels to one TorchServe and their stubs."""

    def __init__(
        self,
        inference: grpc.aio.Channel,
        management: grpc.aio.Channel,
        keys: KeyFile,
    ) -> None:
        self.inference_channel = inference
        self.management_channel = management
        self.inference = inference_pb2_grpc.InferenceAPIsServiceStub(inference)
        self.management = management_pb2_grpc.ManagementAPIsServiceStub(management)
        self.keys = keys
        # From the last health poll: whether TorchServe answers Ping as Healthy, and which of
        # the backend's models have a ready worker there.
        self.answers = False
        self.ready_models: frozenset[str] = frozenset()

    async def close(self, grace: float | None = None) -> None:
        await asyncio.gather(
            self.inference_channel.close(grace), self.management_channel.close(grace)
        )

    async def management_call(self, method: str, request: object, timeout: float | None) -> str:
        call = getattr(self.management, method)
        response = await call(request, timeout=timeout, metadata=self.keys.metadata("management"))
        return response.msg

    async def registered_models(self, timeout: float | None) -> list[str]:
        msg = await self.management_call(
            "ListModels", management_pb2.ListModelsRequest(limit=LIST_LIMIT), timeout
        )
        return [m["modelName"] for m in json.loads(msg).get("models", [])]

    async def ready_workers(self, model: str, timeout: float | None) -> int:
        msg = await self.management_call(
            "DescribeModel", management_pb2.DescribeModelRequest(model_name=model), timeout
        )
        return sum(
            w.get("status") == "READY" for version in json.loads(msg) for w in version["workers"]
        )

    async def health(self, models: Collection[str]) -> tuple[bool, str]:
        """Whether this TorchServe serves: Ping says Healthy and every one of `models` that
        it has registered has a ready worker; with the reason in words when it does not.
        Records what it learnt in `answers` and `ready_models` once the poll ends: calls
        picking a replica meanwhile see the last poll's answer, not a half-done one."""
        ping = await self.inference.Ping(
            empty_pb2.Empty(), timeout=5, metadata=self.keys.metadata("inference")
        )
        status = json.loads(ping.health).get("status")
        if status != "Healthy":
            self.answers, self.ready_models = False, frozenset()
            return False, f"Ping says {status!r}"
        registered = set(await self.registered_models(5))
        wanted = [m for m in models if m in registered]
        ready = await asyncio.gather(*(self.ready_workers(m, 5) for m in wanted))
        self.answers = True
        self.ready_models = frozenset(m for m, n in zip(wanted, ready, strict=True) if n)
        waiting = [m for m in wanted if m not in self.ready_models]
        if waiting:
            return False, f"no worker ready for {', '.join(waiting)}"
        return True, "serving"


def _refusal(error: grpc.aio.AioRpcError) -> str:
    """Why a health poll failed: unreachable, or what TorchServe said (a wrong key, say)."""
    code = error.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return f"unreachable ({code.name})"
    return f"refused: {code.name}: {(error.details() or '')[:200]}"


def torchserve_health(
    models: Callable[[], Collection[str]], interval_s: float = HEALTH_INTERVAL_S
) -> HealthSource[TorchServeReplica]:
    """TorchServe has no health Watch: poll each replica's Ping and its models' workers."""

    async def poll(replica: Replica[TorchServeReplica]) -> AsyncIterator[tuple[bool, str]]:
        while True:
            try:
                yield await replica.channel.health(models())
            except grpc.aio.AioRpcError as error:
                replica.channel.answers, replica.channel.ready_models = False, frozenset()
                yield False, _refusal(error)
            except (ServemeshError, ValueError, KeyError, TypeError) as error:
                replica.channel.answers, replica.channel.ready_models = False, frozenset()
                yield False, f"unhealthy ({error})"
            await asyncio.sleep(interval_s)

    return poll
