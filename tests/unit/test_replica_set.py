"""A backend's replicas (gateway/backends/servemesh/replicas.py) over fake channels:
least-outstanding picking, ties, replicas out of health skipped, none serving, and addresses
that a DNS name resolves to.

Each fake channel answers grpc.health.v1 Watch from a queue the test feeds, so health goes
through the ReplicaSet's own watcher as it does with real replicas, and no socket is opened.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

import gateway.backends.servemesh.replicas as replicas_module
from gateway.backends.servemesh.replicas import ReplicaSet, grpc_health_watch
from servemesh.errors import Unavailable

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
END = object()  # the health stream ends


class FakeChannel:
    """A replica's channel: its Watch stream yields what the test puts in `health`."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.health: asyncio.Queue[Any] = asyncio.Queue()
        self.watch_metadata: list[Any] = []
        self.closed_with: list[float | None] = []

    def unary_unary(self, method: str, **kwargs: Any) -> Callable[..., Any]:
        def unexpected(*args: Any, **kwargs: Any) -> None:
            raise AssertionError(f"{method} was called; the replica set only watches")

        return unexpected

    def unary_stream(self, method: str, **kwargs: Any) -> Callable[..., Any]:
        assert method == "/grpc.health.v1.Health/Watch"
        return self._watch

    def _watch(self, request: health_pb2.HealthCheckRequest, metadata: Any = None) -> Any:
        assert request == health_pb2.HealthCheckRequest()  # the server's overall health
        self.watch_metadata.append(metadata)
        return self._responses()

    async def _responses(self) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        while True:
            item = await self.health.get()
            if item is END:
                return
            if isinstance(item, grpc.StatusCode):
                raise grpc.aio.AioRpcError(item, grpc.aio.Metadata(), grpc.aio.Metadata())
            yield health_pb2.HealthCheckResponse(status=item)

    async def close(self, grace: float | None = None) -> None:
        self.closed_with.append(grace)


class Channels:
    """The open_channel of a ReplicaSet, keeping each channel it opened by address."""

    def __init__(self) -> None:
        self.opened: dict[str, FakeChannel] = {}

    def __call__(self, address: str) -> FakeChannel:
        assert address not in self.opened, f"{address} opened twice"
        self.opened[address] = FakeChannel(address)
        return self.opened[address]


async def until(condition: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    """Waits for the watchers, which run on the loop, to catch up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


class Harness:
    def __init__(
        self, addresses: list[str], metadata: tuple[tuple[str, str], ...] = (), **options: Any
    ) -> None:
        self.channels = Channels()
        self.set = ReplicaSet(
            "llama", addresses, self.channels, grpc_health_watch(metadata), **options
        )
        self.set.start()  # the resolver runs at the test's next await

    def replica(self, address: str) -> replicas_module.Replica:
        return next(r for r in self.set.replicas if r.address == address)

    async def health(self, address: str, status: Any, state: str) -> None:
        """Sends one health update to the replica at `address` and waits until it is seen."""
        await until(lambda: address in self.channels.opened, f"{address} opened")
        self.channels.opened[address].health.put_nowait(status)
        await until(lambda: self.replica(address).state == state, f"{address}: {state}")

    async def serving(self, *addresses: str) -> None:
        for address in addresses:
            await self.health(address, SERVING, "serving")


A, B, C = "10.0.0.1:50061", "10.0.0.2:50061", "10.0.0.3:50061"


@pytest.fixture
async def three() -> AsyncIterator[Harness]:
    harness = Harness([A, B, C])
    await until(lambda: len(harness.set.replicas) == 3, "three replicas")
    yield harness
    await harness.set.close()


@pytest.fixture
def choices(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    """The replicas each tie was broken between; the first of them is picked."""
    seen: list[list[str]] = []

    def first(candidates: list[Any]) -> Any:
        seen.append([r.address for r in candidates])
        return candidates[0]

    monkeypatch.setattr(replicas_module.random, "choice", first)
    yield seen


async def test_replicas_start_not_serving_and_in_the_given_order(three: Harness) -> None:
    assert [r.address for r in three.set.replicas] == [A, B, C]
    assert [(r.serving, r.state, r.outstanding) for r in three.set.replicas] == [
        (False, "not checked yet", 0)
    ] * 3


async def test_the_replica_with_fewest_outstanding_calls_is_picked(three: Harness) -> None:
    await three.serving(A, B, C)
    three.replica(A).outstanding, three.replica(B).outstanding = 2, 1
    three.replica(C).outstanding = 3
    assert three.set.pick().address == B
    three.replica(C).outstanding = 0
    assert three.set.pick().address == C


async def test_ties_are_broken_at_random_among_the_fewest(three: Harness, choices) -> None:
    await three.serving(A, B, C)
    three.replica(B).outstanding = 1
    assert three.set.pick().address == A
    assert choices == [[A, C]]  # B, with more calls, was never a candidate


async def test_ties_spread_over_the_tied_replicas(three: Harness) -> None:
    """Without patching random: 200 picks among three tied replicas miss one with
    probability 3 * (2/3)**200, about 1e-35."""
    await three.serving(A, B, C)
    assert {three.set.pick().address for _ in range(200)} == {A, B, C}


async def test_in_flight_counts_a_call_while_it_runs(three: Harness, choices) -> None:
    await three.serving(A, B, C)
    first = three.set.pick()
    with three.set.in_flight(first):
        assert first.outstanding == 1
        second = three.set.pick()
        assert second is not first
        with three.set.in_flight(second):
            third = three.set.pick()
            assert {first.address, second.address, third.address} == {A, B, C}
    assert [r.outstanding for r in three.set.replicas] == [0, 0, 0]
    assert choices == [[A, B, C], [B, C], [C]]


async def test_in_flight_gives_the_call_back_when_it_fails(three: Harness) -> None:
    await three.serving(A)
    replica = three.set.pick()
    with pytest.raises(RuntimeError), three.set.in_flight(replica):
        assert replica.outstanding == 1
        raise RuntimeError("the call failed")
    assert replica.outstanding == 0


async def test_replicas_out_of_health_are_skipped(three: Harness) -> None:
    await three.serving(A, B, C)
    three.replica(B).outstanding = 5
    await three.health(A, NOT_SERVING, "NOT_SERVING")
    await three.health(C, grpc.StatusCode.UNAVAILABLE, "unreachable (UNAVAILABLE)")
    assert three.replica(C).serving is False
    assert {three.set.pick().address for _ in range(20)} == {B}


async def test_a_replica_is_back_once_it_serves_again(three: Harness) -> None:
    await three.serving(A)
    await three.health(A, grpc.StatusCode.UNAVAILABLE, "unreachable (UNAVAILABLE)")
    with pytest.raises(Unavailable):
        three.set.pick()
    # The watcher watches again after a short delay, on the same channel.
    await three.serving(A)
    assert three.set.pick().address == A
    assert len(three.channels.opened[A].watch_metadata) == 2


async def test_a_health_stream_that_ends_takes_the_replica_out(three: Harness) -> None:
    await three.serving(A, B)
    await three.health(A, END, "health stream ended")
    assert three.replica(A).serving is False
    assert three.set.pick().address == B


async def test_replicas_a_retry_failed_on_are_avoided(three: Harness) -> None:
    await three.serving(A, B, C)
    three.replica(C).outstanding = 9
    assert three.set.pick(avoid=[three.replica(A), three.replica(B)]).address == C


async def test_when_every_serving_replica_is_avoided_one_is_still_picked(three: Harness) -> None:
    await three.serving(A, B)
    three.replica(A).outstanding = 1
    avoid = [three.replica(A), three.replica(B)]
    assert three.set.pick(avoid=avoid).address == B


async def test_no_serving_replica_is_unavailable_with_each_replicas_state(three: Harness) -> None:
    await three.health(A, NOT_SERVING, "NOT_SERVING")
    await three.health(B, grpc.StatusCode.DEADLINE_EXCEEDED, "unreachable (DEADLINE_EXCEEDED)")
    with pytest.raises(Unavailable) as caught:
        three.set.pick()
    error = caught.value
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.message == (
        f"backend 'llama' has no serving replica ({A}: NOT_SERVING; "
        f"{B}: unreachable (DEADLINE_EXCEEDED); {C}: not checked yet); retry shortly"
    )
    assert error.reason == "NO_SERVING_REPLICA"
    assert error.metadata == {"backend": "llama"}


async def test_before_any_address_resolves_the_error_says_so() -> None:
    harness = Harness([])
    with pytest.raises(Unavailable) as caught:
        harness.set.pick()  # the resolver has not run yet
    assert caught.value.message == (
        "backend 'llama' has no serving replica (no address resolved yet); retry shortly"
    )
    await harness.set.close()


async def test_serving_changes_follow_the_replicas() -> None:
    harness = Harness([A, B])
    changes = harness.set.serving_changes()
    assert await anext(changes) is False  # none resolved yet
    seen: list[bool] = []

    async def follow() -> None:
        async for serving in changes:
            seen.append(serving)

    follower = asyncio.create_task(follow())
    await harness.serving(A)
    await until(lambda: seen and seen[-1], "serving seen")
    await harness.health(A, NOT_SERVING, "NOT_SERVING")
    await until(lambda: not seen[-1], "not serving seen")
    follower.cancel()
    await asyncio.gather(follower, return_exceptions=True)
    await harness.set.close()


async def test_health_calls_carry_the_backends_metadata() -> None:
    harness = Harness([A], metadata=(("authorization", "Bearer k"),))
    await harness.serving(A)
    assert harness.channels.opened[A].watch_metadata == [(("authorization", "Bearer k"),)]
    await harness.set.close()


async def test_a_kind_brings_its_own_health_source() -> None:
    """TorchServe has no grpc.health.v1: its replicas' health comes from a source of its own,
    which the set follows like Watch: its states, its errors, and its end."""
    updates: asyncio.Queue[Any] = asyncio.Queue()

    async def polled(replica: replicas_module.Replica) -> AsyncIterator[tuple[bool, str]]:
        while (item := await updates.get()) is not END:
            if isinstance(item, grpc.StatusCode):
                raise grpc.aio.AioRpcError(item, grpc.aio.Metadata(), grpc.aio.Metadata())
            yield item

    channels = Channels()
    replica_set = ReplicaSet("torchserve", [A], channels, polled)
    replica_set.start()
    await updates.put((False, "models loading"))
    await until(
        lambda: replica_set.replicas and replica_set.replicas[0].state == "models loading",
        "loading",
    )
    with pytest.raises(Unavailable, match="models loading"):
        replica_set.pick()
    await updates.put((True, "serving"))
    await until(lambda: replica_set.replicas[0].serving, "serving")
    assert replica_set.pick().address == A
    await updates.put(grpc.StatusCode.UNAVAILABLE)
    await until(lambda: not replica_set.replicas[0].serving, "out after an error")
    assert replica_set.replicas[0].state == "unreachable (UNAVAILABLE)"
    assert channels.opened[A].watch_metadata == [], "no grpc.health.v1 call was made"
    await replica_set.close()


async def test_close_closes_every_channel() -> None:
    harness = Harness([A, B])
    await harness.serving(A, B)
    await harness.set.close()
    assert [c.closed_with for c in harness.channels.opened.values()] == [[None], [None]]


@pytest.fixture
async def resolved(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str], list[Any]]:
    """What getaddrinfo answers for (host, port), set by the test; no DNS lookup happens."""
    answers: dict[tuple[str, str], list[Any]] = {}
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: str, port: str, **kwargs: Any) -> list[Any]:
        assert kwargs == {"type": socket.SOCK_STREAM}
        answer = answers[(host, port)]
        if isinstance(answer, OSError):
            raise answer
        return answer

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return answers


def info(ip: str, port: int) -> tuple[Any, ...]:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sockaddr = (ip, port, 0, 0) if family == socket.AF_INET6 else (ip, port)
    return (family, socket.SOCK_STREAM, 6, "", sockaddr)


async def test_a_dns_target_follows_the_addresses_it_resolves_to(resolved) -> None:
    resolved[("llama.svc", "50061")] = [
        info("10.0.0.1", 50061),
        info("10.0.0.1", 50061),  # the same address twice (one per protocol) is one replica
        info("fd00::2", 50061),
    ]
    harness = Harness(["dns:///llama.svc:50061", C], resolve_interval_s=0.001)
    await until(lambda: len(harness.set.replicas) == 3, "three replicas")
    assert [r.address for r in harness.set.replicas] == [A, "[fd00::2]:50061", C]

    resolved[("llama.svc", "50061")] = [info("10.0.0.2", 50061)]
    await until(lambda: [r.address for r in harness.set.replicas] == [C, B], "A replaced by B")
    # Calls still running on a removed replica get a grace period to finish.
    removed = [harness.channels.opened[a] for a in (A, "[fd00::2]:50061")]
    grace = [replicas_module.REMOVED_GRACE_S]
    await until(lambda: all(c.closed_with == grace for c in removed), "removed ones closed")
    await harness.set.close()


async def test_a_name_that_stops_resolving_keeps_its_replicas(resolved) -> None:
    resolved[("llama.svc", "1")] = [info("10.0.0.1", 1)]
    harness = Harness(["dns:///llama.svc:1"], resolve_interval_s=0.001)
    await harness.serving("10.0.0.1:1")
    resolved[("llama.svc", "1")] = OSError("temporary failure in name resolution")
    await asyncio.sleep(0.05)  # many resolve rounds
    assert harness.set.pick().address == "10.0.0.1:1"
    await harness.set.close()


async def test_a_change_while_the_reader_is_busy_is_not_lost() -> None:
    """The health follower awaits between changes; one that happens meanwhile still shows."""
    harness = Harness([A])
    changes = harness.set.serving_changes()
    assert await anext(changes) is False
    await harness.serving(A)  # the reader is not waiting: it is "busy" between two changes
    assert await asyncio.wait_for(anext(changes), 1.0) is True
    await harness.set.close()
