"""The lifecycle of a servemesh gRPC server: bind (plaintext or TLS), API keys, health,
reflection, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from runtime.auth import OPEN_SERVICES, ApiKeys, AuthInterceptor
from runtime.connections import ConnectionLimits
from runtime.errors import BodyCheck, ErrorInterceptor
from runtime.quoting import shown
from runtime.reflection import enable_reflection
from runtime.tls import server_credentials
from servemesh.channel import MAX_MESSAGE_BYTES  # one limit for servers and clients alike
from servemesh.errors import NotFound

log = logging.getLogger(__name__)
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthService(health.aio.HealthServicer):
    """grpc.health.v1 whose NOT_FOUND for a name it does not know says which names it knows
    (the library's says nothing at all)."""

    def __init__(self) -> None:
        super().__init__()
        self._names = {""}

    async def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        self._names.add(service)
        await super().set(service, status)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in self._names:
            raise NotFound(
                f"no health service is named {shown(request.service)}; the names are: "
                f"{', '.join(map(repr, sorted(self._names)))}",
                reason="UNKNOWN_HEALTH_SERVICE",
            )
        return await super().Check(request, context)


@dataclass(frozen=True)
class ServerSettings:
    """Where a server listens, how long in-flight calls may run on after SIGTERM, the largest
    message it takes or sends, its TLS files and the API keys it accepts.

    TLS is on when `tls_cert` is set; `tls_client_ca` also requires client certificates.
    With `api_keys`, every call needs one, except health and reflection unless
    `auth_health_reflection`.
    """

    address: str
    grace_s: float = 10.0
    max_message_bytes: int = MAX_MESSAGE_BYTES
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    api_keys: ApiKeys | None = None
    auth_health_reflection: bool = False
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("client certificates (--tls-client-ca) need TLS: set --tls-cert")
        if self.auth_health_reflection and self.api_keys is None:
            raise ValueError(
                "--auth-health-reflection needs API keys: --api-key-file or *_API_KEYS"
            )
        if self.max_message_bytes < 1:
            raise ValueError("--max-message-bytes must be positive")

    def describe(self) -> str:
        """How the port is secured, for the start-up log line."""
        transport = "mTLS" if self.tls_client_ca else "TLS" if self.tls_cert else "plaintext"
        if self.api_keys is None:
            return f"{transport}, no API keys"
        scope = "every call" if self.auth_health_reflection else "all but health and reflection"
        count = len(self.api_keys)
        return f"{transport}, {count} API key{'s' if count > 1 else ''} for {scope}"


class GrpcServer:
    """A grpc.aio server with grpc.health.v1, reflection, API keys and the error interceptor.

    Health starts NOT_SERVING for every name in `service_names`; the owner marks it SERVING
    once its model or backends are ready.
    """

    def __init__(
        self,
        settings: ServerSettings,
        service_names: Sequence[str],
        body_check: BodyCheck | None = None,
        max_request_bytes: int | None = None,
    ) -> None:
        """`body_check` weighs each request body before it is parsed (see runtime.errors);
        `max_request_bytes` lowers the largest request below `max_message_bytes`: gRPC
        refuses a bigger one from its length prefix, before holding its bytes."""
        self.settings = settings
        size = settings.max_message_bytes
        receive = min(size, max_request_bytes or size)
        self._errors = ErrorInterceptor(body_check)
        interceptors: list[grpc.aio.ServerInterceptor] = [self._errors]
        if settings.api_keys is not None:
            # First, so outermost: a call without a valid key is refused before anything
            # else runs for it. The refusal aborts with its own status rather than raising
            # into ErrorInterceptor, which wraps only unary and server-streaming methods and
            # so would not cover reflection's bidirectional stream.
            open_services = () if settings.auth_health_reflection else OPEN_SERVICES
            interceptors.insert(0, AuthInterceptor(settings.api_keys, open_services))
        self.grpc = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_send_message_length", size),
                ("grpc.max_receive_message_length", receive),
                *settings.connections.grpc_options(),
            ],
        )
        self.health = HealthService()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        enable_reflection([*service_names, health.SERVICE_NAME], self.grpc)
        self._service_names = ["", *service_names]
        if settings.tls_cert and settings.tls_key:
            credentials = server_credentials(
                settings.tls_cert, settings.tls_key, settings.tls_client_ca
            )
            self.port = self._bind(lambda: self.grpc.add_secure_port(settings.address, credentials))
        else:
            self.port = self._bind(lambda: self.grpc.add_insecure_port(settings.address))
            if settings.api_keys is not None:
                log.warning(
                    "API keys on a plaintext port can be read by anyone on the network path; "
                    "set --tls-cert and --tls-key unless that path is trusted"
                )
        self._stopping = asyncio.Event()
        # Called once a stop is asked for, before the drain: other doors of the same process
        # (the gateway's HTTP listener) stop accepting at the same moment.
        self.on_stop: list[Callable[[], None]] = []

    def _bind(self, add_port: Callable[[], int]) -> int:
        """The port `add_port` bound; one line naming the flag, not a traceback, otherwise."""
        try:
            return add_port()
        except RuntimeError as error:
            raise SystemExit(
                f"cannot listen on {self.settings.address} ({error}); choose another with --address"
            ) from None

    async def start(self) -> None:
        for name in self._service_names:
            await self.health.set(name, _NOT_SERVING)
        await self.grpc.start()
        log.info(
            "listening on %s (port %d; %s)",
            self.settings.address,
            self.port,
            self.settings.describe(),
        )

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
        for callback in self.on_stop:
            callback()
        log.info(
            "stopping: refusing new calls, %.0f s grace for calls in flight", self.settings.grace_s
        )
        await self.health.enter_graceful_shutdown()
        stopping = asyncio.create_task(self.grpc.stop(self.settings.grace_s))
        # Health Watch streams never end by themselves and would hold the stop for the whole
        # grace period: once the calls that do work have finished, the rest are cut.
        drained = asyncio.create_task(self._errors.calls.idle())
        await asyncio.wait({stopping, drained}, return_when=asyncio.FIRST_COMPLETED)
        drained.cancel()
        if not stopping.done():
            log.info("calls in flight finished; stopping now")
            await self.grpc.stop(None)
        await stopping
