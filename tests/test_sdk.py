"""The SDK's error mapping, retries and deadlines, and the server-side error interceptor.

The servers here are fault-injecting fakes: a real predictor cannot be told to fail with a
given code, or to be unavailable exactly twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

import servemesh.errors as errors
from runtime.server import GrpcServer, ServerSettings
from servemesh import AsyncClient, Client, Internal, ResourceExhausted, Unavailable
from servemesh.v1 import generation_pb2
from servemesh.v1 import prediction_service_pb2 as pb
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc

CODES = [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK]
SLOW_S = 0.5  # how long the fake's "slow" model takes


class FaultInjectingServicer(pb_grpc.PredictionServiceServicer):
    """Fails on demand: request.model names the status code to raise, or a failure mode."""

    def __init__(self) -> None:
        self.calls = 0
        self.unavailable_first = 0

    async def Predict(self, request: pb.PredictRequest, context) -> pb.PredictResponse:
        self.calls += 1
        if self.calls <= self.unavailable_first:
            raise errors.Unavailable("warming up", reason="WARMING_UP")
        if request.model == "crash":
            raise RuntimeError("secret internal detail")
        if request.model == "slow":
            await asyncio.sleep(SLOW_S)
        if request.model in grpc.StatusCode.__members__:
            code = grpc.StatusCode[request.model]
            raise errors.error_class(code)(
                f"injected {code.name}", reason="INJECTED", metadata={"code": code.name}
            )
        output = generation_pb2.TextGenerationOutput(text="ok")
        return pb.PredictResponse(request_id=request.request_id, text_generation=output)

    async def PredictStream(self, request, context) -> AsyncIterator[pb.PredictStreamResponse]:
        self.calls += 1
        yield pb.PredictStreamResponse(text_delta=generation_pb2.TextDelta(text="a"))
        raise errors.ResourceExhausted("out of KV cache mid-stream", reason="KV_FULL")


@pytest.fixture
async def fake() -> AsyncIterator[tuple[str, FaultInjectingServicer]]:
    server = GrpcServer(ServerSettings("127.0.0.1:0"), ["servemesh.v1.PredictionService"])
    servicer = FaultInjectingServicer()
    pb_grpc.add_PredictionServiceServicer_to_server(servicer, server.grpc)
    await server.start()
    await server.set_serving(True)
    yield f"127.0.0.1:{server.port}", servicer
    await server.grpc.stop(0)


@pytest.mark.parametrize(
    "code", [c for c in CODES if c is not grpc.StatusCode.UNAVAILABLE], ids=lambda c: c.name
)
async def test_each_status_code_maps_to_its_exception(fake, code: grpc.StatusCode) -> None:
    address, _ = fake
    async with AsyncClient(address, max_attempts=1) as client:
        with pytest.raises(errors.ServemeshError) as caught:
            await client.predict(code.name, "hi")
    error = caught.value
    assert type(error) is errors.error_class(code)
    assert error.code is code
    assert error.message == f"injected {code.name}"
    assert (error.reason, error.metadata) == ("INJECTED", {"code": code.name})


def test_every_status_code_has_its_own_class() -> None:
    classes = {errors.error_class(c) for c in CODES if c is not grpc.StatusCode.UNKNOWN}
    assert len(classes) == len(CODES) - 1
    assert errors.error_class(grpc.StatusCode.UNKNOWN) is errors.ServemeshError


async def test_unexpected_exception_is_internal_without_its_details(fake) -> None:
    address, _ = fake
    async with AsyncClient(address) as client:
        with pytest.raises(Internal) as caught:
            await client.predict("crash", "hi")
        assert "secret" not in caught.value.message
        assert (await client.predict("fine", "hi")).text == "ok", "the server keeps serving"


async def test_error_in_the_middle_of_a_stream_ends_it_with_that_status(fake) -> None:
    address, _ = fake
    received = []
    async with AsyncClient(address) as client:
        with pytest.raises(ResourceExhausted, match="mid-stream"):
            async for chunk in client.predict_stream("any", "hi"):
                received.append(chunk.text)
    assert received == ["a"]


async def test_unary_calls_are_retried_on_unavailable(fake) -> None:
    address, servicer = fake
    servicer.unavailable_first = 2
    async with AsyncClient(address) as client:
        assert (await client.predict("fine", "hi")).text == "ok"
    assert servicer.calls == 3


async def test_sync_client_retries_and_gives_up_after_max_attempts(fake) -> None:
    address, servicer = fake
    servicer.unavailable_first = 10

    def call() -> None:
        with Client(address, max_attempts=3) as client:
            client.predict("fine", "hi")

    with pytest.raises(Unavailable, match="warming up") as caught:
        await asyncio.to_thread(call)  # blocking client; the fake serves on this loop
    assert caught.value.reason == "WARMING_UP"
    assert servicer.calls == 3


async def test_default_deadline_applies_and_can_be_overridden(fake) -> None:
    address, _ = fake
    async with AsyncClient(address, timeout=SLOW_S / 5) as client:
        with pytest.raises(errors.DeadlineExceeded):
            await client.predict("slow", "hi")
        # A longer deadline, or none, lets the same call finish: the override is honoured.
        assert (await client.predict("slow", "hi", timeout=SLOW_S * 10)).text == "ok"
        assert (await client.predict("slow", "hi", timeout=None)).text == "ok"
        with pytest.raises(errors.DeadlineExceeded):
            await client.predict("slow", "hi", timeout=SLOW_S / 10)


def test_request_needs_exactly_one_input() -> None:
    with Client("127.0.0.1:1") as client:
        with pytest.raises(errors.InvalidArgument, match="exactly one"):
            client.predict("m", "prompt", messages=[("user", "hi")])
        with pytest.raises(errors.InvalidArgument, match="unknown chat role"):
            client.predict("m", messages=[("robot", "hi")])
