"""Follows each backend's grpc.health.v1 status and publishes it in the gateway's health.

Health names: `backend/NAME` and `model/NAME` follow one backend. The gateway's own names
(the overall "" and its services') say whether the gateway can serve: SERVING while at least
one backend serves. A readiness probe on them must not take the whole front door out of its
load balancer because one backend failed; the models of the backends that serve still
answer. `all-backends` is SERVING only while every backend serves: what `make up` and the
tests wait for before they call every model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from gateway.backends import Backend
from gateway.router import Router
from runtime.server import GrpcServer

log = logging.getLogger(__name__)


ALL_BACKENDS = "all-backends"


def backend_health_name(backend: str) -> str:
    return f"backend/{backend}"


def model_health_name(model: str) -> str:
    return f"model/{model}"


class HealthFollower:
    def __init__(self, server: GrpcServer, router: Router, overall: Sequence[str]) -> None:
        self._server = server
        self._overall = list(overall)
        self._models: dict[str, list[str]] = {}
        self._backends: dict[str, Backend] = {}
        for route in router.routes:
            self._backends[route.backend.name] = route.backend
            self._models.setdefault(route.backend.name, []).append(route.model)
        self._serving = dict.fromkeys(self._backends, False)
        self._tasks: list[asyncio.Task[None]] = []

    def names(self, backend: str) -> list[str]:
        """The health names that follow `backend`."""
        return [backend_health_name(backend), *map(model_health_name, self._models[backend])]

    async def start(self) -> None:
        for name in self._backends:
            await self._server.set_serving(False, self.names(name))
        await self._server.set_serving(False, [ALL_BACKENDS])
        self._tasks = [
            asyncio.create_task(self._follow(b), name=f"health/{b.name}")
            for b in self._backends.values()
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow(self, backend: Backend) -> None:
        async for serving in backend.watch_health():
            if serving == self._serving[backend.name]:
                continue
            self._serving[backend.name] = serving
            log.info("backend %s is %s", backend.name, "SERVING" if serving else "NOT_SERVING")
            await self._server.set_serving(serving, self.names(backend.name))
            await self._server.set_serving(any(self._serving.values()), self._overall)
            await self._server.set_serving(all(self._serving.values()), [ALL_BACKENDS])
