"""The lifecycle of a servemesh gRPC server: bind, health, reflection, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from runtime.errors import ErrorInterceptor

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class ServerSettings:
    """Where a server listens and how long in-flight calls may run on after SIGTERM."""

    address: str
    grace_s: float = 10.0
    max_message_bytes: int = MAX_MESSAGE_BYTES


class GrpcServer:
    """A grpc.aio server with grpc.health.v1, reflection and the error interceptor.

    Health starts NOT_SERVING for every name in `service_names`; the owner marks it SERVING
    once its model or backends are ready.
    """

    def __init__(self, settings: ServerSettings, service_names: Sequence[str]) -> None:
        self.settings = settings
        size = settings.max_message_bytes
        self.grpc = grpc.aio.server(
            interceptors=[ErrorInterceptor()],
            options=[
                ("grpc.max_send_message_length", size),
                ("grpc.max_receive_message_length", size),
            ],
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection(
            [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.grpc
        )
        self._service_names = ["", *service_names]
        self.port = self.grpc.add_insecure_port(settings.address)
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        for name in self._service_names:
            await self.health.set(name, _NOT_SERVING)
        await self.grpc.start()
        log.info("listening on %s (port %d)", self.settings.address, self.port)

    async def set_serving(self, serving: bool, names: Sequence[str] | None = None) -> None:
        """Marks the server (all its service names, or only `names`) SERVING or NOT_SERVING."""
        for name in self._service_names if names is None else names:
            await self.health.set(name, _SERVING if serving else _NOT_SERVING)

    def request_stop(self) -> None:
        self._stopping.set()

    async def run_until_stopped(self) -> None:
        """Serves until SIGTERM or SIGINT, then drains: NOT_SERVING, then stop with grace."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self._stopping.wait()
        log.info(
            "stopping: refusing new calls, %.0f s grace for calls in flight", self.settings.grace_s
        )
        await self.health.enter_graceful_shutdown()
        await self.grpc.stop(self.settings.grace_s)
