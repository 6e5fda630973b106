"""The replicas of one backend: where they are (a list, or every address a DNS name resolves
to), which of them serve (a health source per replica: grpc.health.v1 Watch unless the backend
kind brings its own), and which takes the next call (the one with the fewest calls
outstanding).

Balancing per call over a channel per replica, rather than gRPC's own round-robin on one
channel, is what spreads long-lived streams: a connection that stays open is not a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any, Generic, Protocol, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import Gauge

from gateway import metrics
from servemesh.errors import Unavailable

log = logging.getLogger(__name__)
DNS_SCHEME = "dns:///"
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.2, 2.0
REMOVED_GRACE_S = 60.0
_SERVING = health_pb2.HealthCheckResponse.SERVING


class Connection(Protocol):
    """What a replica is reached through: a grpc.aio.Channel, or a kind's set of them."""

    async def close(self, grace: float | None = None) -> None: ...


ConnectionT = TypeVar("ConnectionT", bound=Connection)


class Replica(Generic[ConnectionT]):
    """One address of a backend, its connection, and what the gateway knows of it."""

    def __init__(self, address: str, channel: ConnectionT) -> None:
        self.address = address
        self.channel = channel
        self.outstanding = 0  # calls running on it now
        self.serving = False
        self.state = "not checked yet"  # says why it is out, for error messages
        self.watcher: asyncio.Task[None] | None = None


# A replica's health: yields (serving, state in words) whenever it may have changed; an
# AioRpcError or the end of the iterator takes the replica out until the next try.
HealthSource = Callable[[Replica[ConnectionT]], AsyncIterator[tuple[bool, str]]]


def grpc_health_watch(
    metadata: tuple[tuple[str, str], ...] = (),
) -> HealthSource[grpc.aio.Channel]:
    """The health source of servers with grpc.health.v1: Watch on the server's own name.
    `metadata` goes on the health calls too: a replica may want its key."""

    async def watch(replica: Replica[grpc.aio.Channel]) -> AsyncIterator[tuple[bool, str]]:
        health = health_pb2_grpc.HealthStub(replica.channel)
        async for response in health.Watch(health_pb2.HealthCheckRequest(), metadata=metadata):
            serving = response.status == _SERVING
            yield serving, "serving" if serving else "NOT_SERVING"

    return watch


class ReplicaSet(Generic[ConnectionT]):
    """Replicas of the backend `backend`; call `pick` on the event loop. `connect` opens
    the connection to one address; `health` follows one replica's health."""

    def __init__(
        self,
        backend: str,
        targets: Sequence[str],
        connect: Callable[[str], ConnectionT],
        health: HealthSource[ConnectionT],
        resolve_interval_s: float = 10.0,
    ) -> None:
        self._backend = backend
        self._health = health
        self._targets = list(targets)
        self._open_channel = connect
        self._resolve_interval_s = resolve_interval_s
        self._replicas: dict[str, Replica[ConnectionT]] = {}
        self._changed = asyncio.Condition()
        self._resolver: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        # Each replica's labelled gauge, looked up once rather than on every call.
        self._outstanding_gauges: dict[str, Gauge] = {}

    @property
    def replicas(self) -> list[Replica[ConnectionT]]:
        return list(self._replicas.values())

    def start(self) -> None:
        """Starts following addresses and health; idempotent, needs a running loop."""
        if self._resolver is None:
            self._resolver = asyncio.create_task(self._resolve_forever(), name=self._backend)

    async def close(self) -> None:
        tasks = [t for t in [self._resolver, *(r.watcher for r in self.replicas)] if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(r.channel.close() for r in self.replicas))

    def pick(
        self,
        avoid: Collection[Replica[ConnectionT]] = (),
        eligible: Callable[[Replica[ConnectionT]], bool] | None = None,
    ) -> Replica[ConnectionT]:
        """The serving replica with the fewest outstanding calls (ties at random), preferring
        those not in `avoid` (the ones a retried call already failed on). `eligible`, where
        given, says which replicas may take the call instead of their overall health."""
        self.start()
        if eligible is None and len(self._replicas) == 1:
            # One replica, the common case: nothing to compare (it is the one to use even
            # when `avoid` holds it, as below).
            (only,) = self._replicas.values()
            if only.serving:
                return only
        usable = eligible or (lambda r: r.serving)
        serving = [r for r in self._replicas.values() if usable(r)]
        candidates = [r for r in serving if r not in avoid] or serving
        if not candidates:
            states = "; ".join(f"{r.address}: {r.state}" for r in self._replicas.values())
            raise Unavailable(
                f"backend {self._backend!r} has no serving replica "
                f"({states or 'no address resolved yet'}); retry shortly",
                reason="NO_SERVING_REPLICA",
                metadata={"backend": self._backend},
            )
        fewest = min(r.outstanding for r in candidates)
        return random.choice([r for r in candidates if r.outstanding == fewest])

    def in_flight(self, replica: Replica[ConnectionT]) -> _InFlight:
        """Counts a call as outstanding on `replica` while it runs (a `with` block)."""
        gauge = self._outstanding_gauges.get(replica.address)
        if gauge is None:
            gauge = metrics.REPLICA_OUTSTANDING.labels(self._backend, replica.address)
            self._outstanding_gauges[replica.address] = gauge
        return _InFlight(replica, gauge)

    async def serving_changes(self) -> AsyncIterator[bool]:
        """Yields whether any replica serves, now and whenever that changes; never ends."""
        self.start()
        last = None
        while True:
            serving = any(r.serving for r in self._replicas.values())
            if serving != last:
                last = serving
                yield serving
                # The reader may have awaited something meanwhile: a change it slept through
                # shows now, against `last`, instead of waiting for the next one.
                continue
            async with self._changed:
                await self._changed.wait()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _resolve_forever(self) -> None:
        while True:
            try:
                addresses = await self._resolve()
            except OSError as error:  # keep the replicas we have until the name resolves
                log.warning(
                    "backend %s: cannot resolve %s: %s", self._backend, self._targets, error
                )
            else:
                await self._update(addresses)
            if not any(t.startswith(DNS_SCHEME) for t in self._targets):
                return  # fixed addresses: nothing to refresh
            await asyncio.sleep(self._resolve_interval_s)

    async def _resolve(self) -> list[str]:
        addresses: list[str] = []
        for target in self._targets:
            if not target.startswith(DNS_SCHEME):
                addresses.append(target)
                continue
            host, _, port = target.removeprefix(DNS_SCHEME).rpartition(":")
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
            for family, *_, sockaddr in infos:
                ip = f"[{sockaddr[0]}]" if family == socket.AF_INET6 else sockaddr[0]
                address = f"{ip}:{sockaddr[1]}"
                if address not in addresses:
                    addresses.append(address)
        return addresses

    async def _update(self, addresses: list[str]) -> None:
        for address in addresses:
            if address not in self._replicas:
                replica = Replica(address, self._open_channel(address))
                metrics.REPLICA_SERVING.labels(self._backend, address).set(0)
                replica.watcher = asyncio.create_task(self._watch(replica), name=address)
                self._replicas[address] = replica
                log.info("backend %s: replica %s added", self._backend, address)
        for address in [a for a in self._replicas if a not in addresses]:
            replica = self._replicas.pop(address)
            self._outstanding_gauges.pop(address, None)
            for gauge in (metrics.REPLICA_SERVING, metrics.REPLICA_OUTSTANDING):
                with contextlib.suppress(KeyError):
                    gauge.remove(self._backend, address)
            log.info("backend %s: replica %s removed (no longer resolved)", self._backend, address)
            if replica.watcher:
                replica.watcher.cancel()
            # Calls still running on it get a grace period to finish.
            closing = asyncio.create_task(replica.channel.close(grace=REMOVED_GRACE_S))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        await self._notify()

    async def _watch(self, replica: Replica[ConnectionT]) -> None:
        """Follows the replica's health; takes it out while it is down or unreachable."""
        delay = RECONNECT_MIN_S
        while True:
            try:
                async for serving, state in self._health(replica):
                    delay = RECONNECT_MIN_S
                    await self._mark(replica, serving, state)
                await self._mark(replica, False, "health stream ended")
            except grpc.aio.AioRpcError as error:
                await self._mark(replica, False, f"unreachable ({error.code().name})")
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _mark(self, replica: Replica[ConnectionT], serving: bool, state: str) -> None:
        replica.state = state
        if serving != replica.serving:
            replica.serving = serving
            metrics.REPLICA_SERVING.labels(self._backend, replica.address).set(int(serving))
            log.info("backend %s: replica %s is %s", self._backend, replica.address, state)
            await self._notify()


class _InFlight:
    """A call outstanding on a replica, as a plain context manager: one per backend call, and
    a class costs less per call than a @contextmanager generator."""

    __slots__ = ("_gauge", "_replica")

    def __init__(self, replica: Replica[Any], gauge: Gauge) -> None:
        self._replica, self._gauge = replica, gauge

    def __enter__(self) -> None:
        self._replica.outstanding += 1
        self._gauge.set(self._replica.outstanding)

    def __exit__(self, *exc_info: object) -> None:
        self._replica.outstanding -= 1
        self._gauge.set(self._replica.outstanding)
