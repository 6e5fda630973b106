"""OpenAI error objects from servemesh's gRPC status codes, so an OpenAI client sees the HTTP
status and error type it expects for the failure the backend reported."""

from __future__ import annotations

from typing import Any

import grpc

from servemesh.errors import ServemeshError, error_class, from_rpc_error

# The HTTP status for each gRPC code: google.rpc's own mapping (code.proto), with 499 for a
# caller that went away, as nginx and Envoy report it.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# OpenAI's error types, by HTTP status; anything else is a server error.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class HttpError(Exception):
    """An error the HTTP front door answers with: an HTTP status and an OpenAI error object.
    `code` is the servemesh reason in lower case (model_not_found, api_key_missing, ...), as
    OpenAI's own codes are spelled; `param` names the request field at fault, if one is."""

    def __init__(self, status: int, message: str, code: str = "", param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict[str, Any]:
        kind = _TYPES.get(self.status, "server_error" if self.status >= 500 else "api_error")
        return {
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.code or None,
            }
        }


def invalid(message: str, param: str | None = None, code: str = "invalid_parameter") -> HttpError:
    """A 400 for a request field that is missing, mistyped or not supported."""
    return HttpError(400, message, code, param)


def from_error(error: BaseException) -> HttpError:
    """The HTTP error for whatever a dispatched call raised."""
    if isinstance(error, HttpError):
        return error
    if isinstance(error, grpc.aio.AioRpcError):
        error = from_rpc_error(error)
    if isinstance(error, ServemeshError):
        param = error.metadata.get("field") or error.metadata.get("param")
        status = HTTP_STATUS.get(error.code, 500)
        return HttpError(status, error.message, error.reason.lower(), param)
    return HttpError(500, "the gateway failed to serve this request; see its log", "internal")


def from_code(code: grpc.StatusCode, message: str, reason: str = "") -> HttpError:
    return from_error(error_class(code)(message, reason=reason))
