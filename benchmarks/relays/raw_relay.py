"""The least a Python gRPC relay can do: every unary call's bytes passed on unparsed, to one
backend, over one channel (grpc.aio, a generic handler, identity serializers).

benchmarks/proxy_overhead.py measures it as the floor of Python gRPC itself: a gateway
written in Python cannot relay for less than this.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc


class Relay(grpc.GenericRpcHandler):
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel
        self._calls: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if method not in self._calls:
            forward = self._channel.unary_unary(method)  # bytes in, bytes out

            async def relay(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
                return await forward(request, timeout=context.time_remaining())

            self._calls[method] = grpc.unary_unary_rpc_method_handler(relay)
        return self._calls[method]


async def serve(address: str, backend: str) -> None:
    channel = grpc.aio.insecure_channel(backend)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((Relay(channel),))
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--address", required=True)
    p.add_argument("--backend", required=True)
    a = p.parse_args()
    asyncio.run(serve(a.address, a.backend))


if __name__ == "__main__":
    main()
