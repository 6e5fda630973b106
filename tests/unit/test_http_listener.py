"""The HTTP door's listening socket: every connection it accepts has Nagle's algorithm off,
or a kept-alive connection waits for the client's delayed ACK (40 ms) on every answer."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.openai_http.listener import bind, parse_address


async def test_accepted_connections_have_tcp_nodelay() -> None:
    listener = bind("127.0.0.1:0")
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    port = listener.getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await asyncio.wait_for(accepted, 5) != 0
    finally:
        writer.close()
        server.close()


def test_a_port_in_use_names_the_flag() -> None:
    first = bind("127.0.0.1:0")
    try:
        with pytest.raises(SystemExit, match="--http-address"):
            bind(f"127.0.0.1:{first.getsockname()[1]}")
    finally:
        first.close()


def test_an_address_without_a_port_is_refused() -> None:
    with pytest.raises(SystemExit, match="HOST:PORT"):
        parse_address("localhost")
    assert parse_address("[::1]:8000") == ("::1", 8000)
