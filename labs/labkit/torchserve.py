"""TorchServe's management API as a lab uses it: read a model's batching, change it, put it back."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from gateway.backends.torchserve.key_file import KeyFile
from servemesh import Client
from torchserve_grpc import management_pb2 as mpb
from torchserve_grpc import management_pb2_grpc as mgrpc


@dataclass(frozen=True)
class Batching:
    """A model's server-side batching and workers, as TorchServe reports them."""

    batch_size: int
    max_batch_delay_ms: int
    workers: int
    response_timeout_s: int
    archive: str


class Management:
    """TorchServe's gRPC management API, with the management key from its key file."""

    def __init__(self, target: str, key_file: str) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = mgrpc.ManagementAPIsServiceStub(self._channel)
        self._keys = KeyFile(key_file)

    def _call(self, method: str, request: Any, timeout: float = 120) -> str:
        rpc = getattr(self._stub, method)
        return rpc(request, metadata=self._keys.metadata("management"), timeout=timeout).msg

    def describe(self, model: str) -> dict[str, Any]:
        return json.loads(self._call("DescribeModel", mpb.DescribeModelRequest(model_name=model)))[
            0
        ]

    def batching(self, model: str) -> Batching:
        d = self.describe(model)
        return Batching(
            d["batchSize"], d["maxBatchDelay"], d["minWorkers"], d["responseTimeout"], d["modelUrl"]
        )

    def register(self, model: str, batching: Batching) -> None:
        """Unregisters `model` and registers its archive again with `batching`; TorchServe
        fixes batching at registration, so this is how its management API changes it."""
        self._call("UnregisterModel", mpb.UnregisterModelRequest(model_name=model))
        request = mpb.RegisterModelRequest(
            url=batching.archive,
            model_name=model,
            batch_size=batching.batch_size,
            max_batch_delay=batching.max_batch_delay_ms,
            initial_workers=batching.workers,
            response_timeout=batching.response_timeout_s,
            synchronous=True,
        )
        self._call("RegisterModel", request, timeout=300)

    @contextlib.contextmanager
    def batching_set(
        self, model: str, client: Client, batch_size: int, max_batch_delay_ms: int
    ) -> Iterator[Batching]:
        """Runs the block with the model re-registered at this batching, and registers it back
        as it was afterwards, also when the block fails. Yields the original settings."""
        original = self.batching(model)
        changed = Batching(
            batch_size,
            max_batch_delay_ms,
            original.workers,
            original.response_timeout_s,
            original.archive,
        )
        try:
            self.register(model, changed)
            wait_serving(client, model)
            yield original
        finally:
            if self.batching(model) != original:
                self.register(model, original)
            wait_serving(client, model)

    def close(self) -> None:
        self._channel.close()


def wait_serving(client: Client, model: str, timeout_s: float = 120) -> None:
    """Waits until the gateway, which follows TorchServe's workers, serves `model` again."""
    deadline = time.monotonic() + timeout_s
    while client.health(f"model/{model}") != "SERVING":
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the gateway does not serve {model} {timeout_s:.0f} s after its change"
            )
        time.sleep(0.2)
