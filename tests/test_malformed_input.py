"""Malformed input at every kind of method, health and reflection included: INVALID_ARGUMENT,
the server keeps serving, and the log gets at most one short line however many arrive.

The server is the runtime every servemesh server runs (GrpcServer), in this process, so the
test can read its log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from runtime.errors import SMALL_REQUEST_BYTES
from runtime.server import GrpcServer, ServerSettings

REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
GARBAGE = b"\xff\xff\xff\x01not protobuf"
CALLS = 200


@pytest.fixture
async def address() -> AsyncIterator[str]:
    server = GrpcServer(ServerSettings("127.0.0.1:0"), ["servemesh.v1.PredictionService"])
    await server.start()
    await server.set_serving(True)
    yield f"127.0.0.1:{server.port}"
    await server.grpc.stop(0)


async def _status(call: grpc.aio.Call) -> tuple[grpc.StatusCode, str]:
    try:
        if hasattr(call, "__aiter__"):
            async for _ in call:
                pass
        else:
            await call
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def test_garbage_at_every_method_kind_is_invalid_argument_and_logged_once(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with grpc.aio.insecure_channel(address) as channel:
        calls = {
            "reflection (bidirectional stream)": lambda: channel.stream_stream(REFLECTION)(
                iter([GARBAGE])
            ),
            "reflection v1 (bidirectional stream)": lambda: channel.stream_stream(
                REFLECTION.replace("v1alpha", "v1")
            )(iter([GARBAGE])),
            "health Check (unary)": lambda: channel.unary_unary("/grpc.health.v1.Health/Check")(
                GARBAGE, timeout=5
            ),
            "health Watch (server stream)": lambda: channel.unary_stream(
                "/grpc.health.v1.Health/Watch"
            )(GARBAGE, timeout=5),
        }
        for kind, make in calls.items():
            for _ in range(CALLS):
                code, details = await _status(make())
                assert code is grpc.StatusCode.INVALID_ARGUMENT, (kind, code, details)
                assert "not a valid protobuf message" in details
        # Still serving, reflection included.
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = [
            reflection_pb2.ServerReflectionResponse.FromString(r)
            async for r in channel.stream_stream(REFLECTION)(iter([request.SerializeToString()]))
        ]
        names = {s.name for s in replies[0].list_services_response.service}
        assert "servemesh.v1.PredictionService" in names
    lines = [r for r in caplog.records if r.name.startswith("runtime")]
    malformed = [r for r in lines if "malformed" in r.getMessage()]
    assert len(malformed) == 1, [r.getMessage() for r in lines]
    assert malformed[0].exc_info is None and len(malformed[0].getMessage()) < 400
    assert not [r for r in lines if r.exc_info], "no tracebacks"


async def test_open_methods_take_small_requests_only(address: str) -> None:
    """Health and reflection need no key by default: a big body is refused before parsing."""
    big = health_pb2.HealthCheckRequest(service="x" * (SMALL_REQUEST_BYTES + 1))
    async with grpc.aio.insecure_channel(address) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        code, details = await _status(check(big.SerializeToString(), timeout=5))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "at most 65536" in details
        ok = health_pb2.HealthCheckRequest(service="").SerializeToString()
        assert await _status(check(ok, timeout=5)) == (grpc.StatusCode.OK, "")
