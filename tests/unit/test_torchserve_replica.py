"""One TorchServe replica's polled health (gateway/backends/torchserve/replica.py) over fake
stubs: what a call picking a replica sees while a poll is half done."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from gateway.backends.torchserve.key_file import KeyFile
from gateway.backends.torchserve.replica import TorchServeReplica


class FakeChannel:
    """Enough of a channel for the generated stubs to be built; the test replaces them."""

    def unary_unary(self, *args: Any, **kwargs: Any) -> None:
        return None

    unary_stream = stream_stream = stream_unary = unary_unary


class SlowTorchServe:
    """Ping and the management calls of a TorchServe whose answers wait for `go`."""

    def __init__(self) -> None:
        self.go = asyncio.Event()

    async def Ping(self, *args: Any, **kwargs: Any) -> Any:
        await self.go.wait()
        return SimpleNamespace(health=json.dumps({"status": "Healthy"}))

    async def ListModels(self, *args: Any, **kwargs: Any) -> Any:
        return SimpleNamespace(msg=json.dumps({"models": [{"modelName": "m"}]}))

    async def DescribeModel(self, *args: Any, **kwargs: Any) -> Any:
        return SimpleNamespace(msg=json.dumps([{"workers": [{"status": "READY"}]}]))


async def test_a_poll_under_way_leaves_the_last_answer_in_place() -> None:
    replica = TorchServeReplica(FakeChannel(), FakeChannel(), KeyFile(""))  # type: ignore[arg-type]
    torchserve = SlowTorchServe()
    replica.inference = replica.management = torchserve  # type: ignore[assignment]
    torchserve.go.set()
    assert await replica.health(["m"]) == (True, "serving")
    torchserve.go.clear()
    poll = asyncio.create_task(replica.health(["m"]))
    await asyncio.sleep(0.01)  # the poll waits in Ping
    assert not poll.done()
    assert replica.answers and replica.ready_models == {"m"}, "a pick meanwhile finds it"
    torchserve.go.set()
    assert await poll == (True, "serving")
