"""Serves the OpenAI-compatible API with uvicorn inside the gateway's own asyncio loop, so the
HTTP and gRPC doors share one dispatcher, one set of backend channels and one process.

Uvicorn is the ASGI server most deployments of Starlette and FastAPI run on; it handles
HTTP/1.1 keep-alive, streaming bodies and disconnects. The gateway owns its lifecycle: it
binds the socket itself (a clear error naming the flag, not uvicorn's exit), and SIGTERM stays
with the gateway, which stops both doors together."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from runtime.server import ServerSettings

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The gateway's loop handles SIGTERM and SIGINT and stops this server itself.
        yield


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"--http-address {address!r}: use HOST:PORT, such as localhost:8000")
    return host.strip("[]") or "0.0.0.0", int(port)


def bind(address: str, shared: bool = False) -> socket.socket:
    """The listening socket, made with protocol IPPROTO_TCP: asyncio turns Nagle's algorithm
    off (TCP_NODELAY) only on connections whose socket says so, and a socket made with
    protocol 0 (socket.create_server's) does not. Without it a kept-alive connection waited
    40 ms per answer (the headers and the body are two writes, the second held until the
    client's delayed ACK of the first): measured +42 ms on every embedding call. `shared`:
    the gateway's worker processes listen on one port (SO_REUSEPORT), as their gRPC does."""
    host, port = parse_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise SystemExit(
            f"cannot listen on {address} for HTTP ({error.strerror}); choose another with "
            "--http-address, or 'off'"
        ) from None
    sock.setblocking(False)
    return sock


class HttpListener:
    """The OpenAI-compatible HTTP door on `address`, with the gRPC server's TLS files and the
    same grace for requests in flight at shutdown."""

    def __init__(
        self, app: ASGIApp, address: str, server: ServerSettings, shared: bool = False
    ) -> None:
        self.socket = bind(address, shared)
        self.port = self.socket.getsockname()[1]
        self._address = address
        self._tls = bool(server.tls_cert)
        config = uvicorn.Config(
            app,
            log_config=None,  # the gateway's logging, not uvicorn's own
            access_log=False,  # one line per call would be a log flood under load
            timeout_graceful_shutdown=max(int(server.grace_s), 1),
            ssl_certfile=server.tls_cert,
            ssl_keyfile=server.tls_key,
            ssl_ca_certs=server.tls_client_ca,
            ssl_cert_reqs=ssl.CERT_REQUIRED if server.tls_client_ca else ssl.CERT_NONE,
            lifespan="off",
        )
        self._server = _EmbeddedServer(config)

    async def serve(self) -> None:
        log.info(
            "OpenAI-compatible HTTP on %s (port %d; %s)",
            self._address,
            self.port,
            "TLS" if self._tls else "plaintext",
        )
        await self._server.serve(sockets=[self.socket])

    def stop(self) -> None:
        """Stops accepting; requests in flight get the grace period, then are cancelled."""
        self._server.should_exit = True
