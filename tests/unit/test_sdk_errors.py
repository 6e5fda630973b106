"""Typed errors (servemesh/errors.py): one class per status code, the status a server sends
for one (AIP-193: code, message, one ErrorInfo), and the error a client reads back from it."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from servemesh import errors
from servemesh.errors import ERROR_DOMAIN, ServemeshError, error_class, from_rpc_error

CODES = [c for c in grpc.StatusCode if c not in (grpc.StatusCode.OK, grpc.StatusCode.UNKNOWN)]
DETAILS_KEY = "grpc-status-details-bin"


class SyncRpcError(grpc.RpcError):
    """What the sync client raises: trailing metadata as a tuple of pairs."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: tuple = ()) -> None:
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._trailing


def aio_error(code: grpc.StatusCode, details: str, trailing: tuple = ()) -> grpc.RpcError:
    """What the async client raises."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details)


KINDS = pytest.mark.parametrize("make", [SyncRpcError, aio_error], ids=["sync", "aio"])


def sent(error: ServemeshError) -> tuple[grpc.StatusCode, str, tuple]:
    """The code, details and trailing metadata a server's interceptor sends for `error`."""
    status = error.to_status()
    return status.code, status.details, tuple(status.trailing_metadata)


@pytest.mark.parametrize("code", CODES, ids=lambda c: c.name)
def test_every_status_code_has_its_own_class(code: grpc.StatusCode) -> None:
    cls = error_class(code)
    assert cls is not ServemeshError and issubclass(cls, ServemeshError)
    assert cls.code is code
    assert cls.__name__.lower() == code.name.replace("_", "").lower()


@pytest.mark.parametrize("code", [grpc.StatusCode.UNKNOWN, grpc.StatusCode.OK])
def test_unknown_and_ok_are_the_base_class(code: grpc.StatusCode) -> None:
    assert error_class(code) is ServemeshError


def test_an_error_says_its_code_and_message() -> None:
    error = errors.NotFound("model 'x' is not served", reason="MODEL_NOT_FOUND")
    assert str(error) == "NOT_FOUND: model 'x' is not served"
    assert error.args == ("model 'x' is not served",)
    assert (error.reason, error.metadata) == ("MODEL_NOT_FOUND", {})


def test_the_reason_defaults_to_the_code_name_and_metadata_is_copied() -> None:
    metadata = {"field": "x"}
    error = errors.InvalidArgument("bad", metadata=metadata)
    metadata["field"] = "changed"
    assert (error.reason, error.metadata) == ("INVALID_ARGUMENT", {"field": "x"})
    assert ServemeshError("?").reason == "UNKNOWN"


def test_the_status_has_the_code_message_and_one_error_info() -> None:
    error = errors.ResourceExhausted("queue full", reason="QUEUE_FULL", metadata={"queue": "4"})
    code, details, trailing = sent(error)
    assert (code, details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")
    assert [key for key, _ in trailing] == [DETAILS_KEY]
    status = status_pb2.Status.FromString(trailing[0][1])
    assert (status.code, status.message, len(status.details)) == (8, "queue full", 1)
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info == error_details_pb2.ErrorInfo(
        reason="QUEUE_FULL", domain=ERROR_DOMAIN, metadata={"queue": "4"}
    )


@KINDS
@pytest.mark.parametrize("code", [*CODES, grpc.StatusCode.UNKNOWN], ids=lambda c: c.name)
def test_what_a_server_sends_a_client_reads_back(make: Any, code: grpc.StatusCode) -> None:
    original = error_class(code)("the message", reason="A_REASON", metadata={"k": "v"})
    read = from_rpc_error(make(*sent(original)))
    assert type(read) is type(original)
    assert (read.message, read.reason, read.metadata) == ("the message", "A_REASON", {"k": "v"})


@KINDS
def test_a_status_without_details_keeps_code_and_message(make: Any) -> None:
    read = from_rpc_error(make(grpc.StatusCode.UNAVAILABLE, "connection refused"))
    assert type(read) is errors.Unavailable
    assert (read.message, read.reason, read.metadata) == (
        "connection refused",
        "UNAVAILABLE",
        {},
    )


@KINDS
def test_no_details_text_is_an_empty_message(make: Any) -> None:
    read = from_rpc_error(make(grpc.StatusCode.INTERNAL, None))
    assert (type(read), read.message) == (errors.Internal, "")


@KINDS
def test_details_that_contradict_the_status_line_are_dropped(make: Any) -> None:
    """A proxy may rewrite the status line and keep the details; the status line wins."""
    _, _, trailing = sent(errors.NotFound("no model", reason="MODEL_NOT_FOUND"))
    read = from_rpc_error(make(grpc.StatusCode.UNAVAILABLE, "proxy: upstream down", trailing))
    assert type(read) is errors.Unavailable
    assert (read.message, read.reason, read.metadata) == ("proxy: upstream down", "UNAVAILABLE", {})


@KINDS
def test_the_error_info_is_found_among_other_details(make: Any) -> None:
    status = status_pb2.Status(code=grpc.StatusCode.ABORTED.value[0], message="m")
    other = any_pb2.Any()
    other.Pack(error_details_pb2.RetryInfo())
    status.details.append(other)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="FIRST", metadata={"a": "1"}))
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="SECOND"))
    grpc_status = rpc_status.to_status(status)
    read = from_rpc_error(make(grpc_status.code, "m", tuple(grpc_status.trailing_metadata)))
    assert (type(read), read.reason, read.metadata) == (errors.Aborted, "FIRST", {"a": "1"})
