"""Request ids: which caller ids are taken as they are, where a call's id comes from, and how
the SDK finds a server's id on a result and on an error."""

from __future__ import annotations

import grpc
import pytest

from runtime.incoming import (
    MAX_REQUEST_ID_CHARS,
    choose_request_id,
    from_headers,
    from_metadata,
    is_sane,
)
from servemesh.errors import NotFound, from_rpc_error
from servemesh.metadata import request_id_in
from servemesh.types import Prediction, StreamChunk
from servemesh.v1 import prediction_service_pb2 as pb


@pytest.mark.parametrize(
    "value",
    ["a", "req-1", "A.b_c-9", "0" * MAX_REQUEST_ID_CHARS, "0af7651916cd43dd8448eb211c80319c"],
)
def test_short_tokens_are_sane(value: str) -> None:
    assert is_sane(value)
    assert choose_request_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0" * (MAX_REQUEST_ID_CHARS + 1),  # too long to put on every log line
        "has space",
        "line\nbreak",
        'quote"s',
        "{json}",
        "ünïcode",
        "a/b",
        "a\x00b",
    ],
)
def test_anything_else_is_replaced_by_a_fresh_id(value: str) -> None:
    assert not is_sane(value)
    fresh = choose_request_id(value)
    assert fresh != value and len(fresh) == 32 and int(fresh, 16) >= 0


def test_fresh_ids_differ() -> None:
    assert len({choose_request_id() for _ in range(100)}) == 100


def test_the_metadata_id_comes_before_the_body_id() -> None:
    metadata = (("authorization", "Bearer k"), ("x-request-id", "from-metadata"))
    assert from_metadata(metadata, "from-body").request_id == "from-metadata"
    assert from_metadata((), "from-body").request_id == "from-body"
    assert from_metadata(None, "").request_id != ""
    # A bad metadata id does not hide a good body id.
    assert from_metadata((("x-request-id", "no good"),), "from-body").request_id == "from-body"


def test_trace_context_is_read_from_metadata_and_headers() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    metadata = (("traceparent", parent), ("tracestate", "vendor=1"), ("x-request-id", "r"))
    assert from_metadata(metadata) == from_headers(dict(metadata))
    incoming = from_metadata(metadata)
    assert (incoming.request_id, incoming.traceparent, incoming.tracestate) == (
        "r",
        parent,
        "vendor=1",
    )


class FakeCallError(grpc.RpcError):
    """What a failed call raises, with the metadata the server sent."""

    def __init__(self, initial: tuple, trailing: tuple) -> None:
        self._initial, self._trailing = initial, trailing

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.NOT_FOUND

    def details(self) -> str:
        return "no such model"

    def initial_metadata(self) -> tuple:
        return self._initial

    def trailing_metadata(self) -> tuple:
        return self._trailing


def test_the_sdk_error_carries_the_request_id() -> None:
    error = from_rpc_error(FakeCallError((), (("x-request-id", "abc"),)))
    assert isinstance(error, NotFound) and error.request_id == "abc"
    streamed = from_rpc_error(FakeCallError((("x-request-id", "s1"),), (("x-request-id", "s1"),)))
    assert streamed.request_id == "s1"
    assert from_rpc_error(FakeCallError((), ())).request_id == ""


def test_an_error_that_is_not_a_call_has_no_request_id() -> None:
    class Bare(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNAVAILABLE

        def details(self) -> str:
            return "down"

        def trailing_metadata(self) -> tuple:
            return ()

    assert from_rpc_error(Bare()).request_id == ""


def test_results_take_the_servers_id_over_the_body() -> None:
    assert request_id_in(None, (("other", "x"),), (("x-request-id", b"bytes-id"),)) == "bytes-id"
    response = pb.PredictResponse(request_id="body-id", model="m")
    assert Prediction.from_proto(response, "server-id").request_id == "server-id"
    assert Prediction.from_proto(response).request_id == "body-id"
    chunk = pb.PredictStreamResponse(request_id="body-id", model="m")
    assert StreamChunk.from_proto(chunk, "server-id").request_id == "server-id"
    assert StreamChunk.from_proto(chunk, "").request_id == "body-id"
