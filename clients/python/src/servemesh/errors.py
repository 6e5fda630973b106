"""Typed errors, one class per gRPC status code, shared by the SDK and the servers.

Servers raise them and an interceptor turns them into a status with a google.rpc.ErrorInfo
detail; clients get them back from `from_rpc_error`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from servemesh.metadata import request_id_in

ERROR_DOMAIN = "servemesh"


class ServemeshError(Exception):
    """A failed call: a status code, a message a person can act on, and a machine reason;
    from a client, also the server's `request_id` for the call ("" when it sent none), the
    id to look for in its logs and traces."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.code.name
        self.metadata = dict(metadata or {})
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def to_status(self) -> grpc.Status:
        """The status a server sends for this error, with one ErrorInfo detail (AIP-193)."""
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata
        )
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        status.details.add().Pack(info)
        return rpc_status.to_status(status)


class Cancelled(ServemeshError):
    code = grpc.StatusCode.CANCELLED


class InvalidArgument(ServemeshError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(ServemeshError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(ServemeshError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServemeshError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(ServemeshError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ServemeshError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(ServemeshError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ServemeshError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(ServemeshError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(ServemeshError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(ServemeshError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(ServemeshError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(ServemeshError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(ServemeshError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[ServemeshError]] = {
    cls.code: cls for cls in ServemeshError.__subclasses__()
}


def error_class(code: grpc.StatusCode) -> type[ServemeshError]:
    """The exception class for a status code; ServemeshError itself for UNKNOWN."""
    return _BY_CODE.get(code, ServemeshError)


def from_rpc_error(error: grpc.RpcError) -> ServemeshError:
    """The typed error for a failed call, with the reason and metadata of its ErrorInfo and
    the request id of its response metadata."""
    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    message: str = error.details() or ""  # type: ignore[attr-defined]
    reason, metadata = "", {}
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:  # details that contradict the status line: keep the status line
        status = None
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
            break
    request_id = _request_id(error)
    return error_class(code)(message, reason=reason, metadata=metadata, request_id=request_id)


def _request_id(error: grpc.RpcError) -> str:
    """The request id in a failed call's metadata; "" for an error that is not a call."""
    try:
        initial = error.initial_metadata()  # type: ignore[attr-defined]
        return request_id_in(initial, error.trailing_metadata())  # type: ignore[attr-defined]
    except AttributeError:
        return ""
