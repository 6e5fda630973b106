"""TorchServe's failed calls in servemesh's terms: a status code a client can act on."""

from __future__ import annotations

import grpc

from servemesh.errors import Internal, NotFound, ServemeshError, Unavailable, error_class

# TorchServe appends the Java exception's class and stack to some messages; clients need
# neither.
JAVA_EXCEPTION_LINE = "\norg.pytorch.serve."


def torchserve_error(error: grpc.aio.AioRpcError, model: str) -> ServemeshError:
    """TorchServe's status in servemesh's terms; its Java exception line is dropped."""
    code = error.code()
    message = (error.details() or "").split(JAVA_EXCEPTION_LINE, 1)[0].strip()
    if code == grpc.StatusCode.INTERNAL and message.startswith("Model not found"):
        return NotFound(
            f"model {model!r} is not registered in TorchServe ({message})",
            reason="MODEL_NOT_FOUND",
            metadata={"model": model},
        )
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return Internal(
            f"TorchServe refused the gateway's token ({message}); check the backend's key_file",
            reason="BACKEND_AUTH_FAILED",
        )
    if message.startswith("Worker died"):
        # The worker that held this request died (crashed, killed, or silent past
        # responseTimeout). TorchServe says INTERNAL, or RESOURCE_EXHAUSTED after a SIGKILL
        # (it takes exit 137 for the OOM killer), and neither tells a client to retry; but
        # TorchServe restarts the worker (2 to 4 s measured) and queues new calls meanwhile,
        # so this is UNAVAILABLE, like a connection lost mid-call. The price: a request that
        # itself kills the worker is resent by a retrying client, up to its max_attempts.
        return Unavailable(
            f"TorchServe's worker for model {model!r} died while it ran this request; TorchServe "
            f"restarts it, so retry after a back-off (TorchServe: {message})",
            reason="BACKEND_WORKER_DIED",
            metadata={"model": model, "torchserve_code": code.name},
        )
    if code == grpc.StatusCode.INTERNAL and "no worker" in message:
        return Unavailable(f"TorchServe: {message}", reason="BACKEND_WORKER_UNAVAILABLE")
    return error_class(code)(f"TorchServe: {message}", reason="BACKEND_ERROR")
