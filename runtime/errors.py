"""One server interceptor that turns exceptions into gRPC statuses, for unary and stream calls."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc

from servemesh.errors import ServemeshError

log = logging.getLogger(__name__)


async def abort_with(context: grpc.aio.ServicerContext, error: BaseException) -> NoReturn:
    """Ends the call with the status that `error` stands for."""
    if isinstance(error, ServemeshError):
        status = error.to_status()
        await context.abort(status.code, status.details, status.trailing_metadata)
    if isinstance(error, grpc.aio.AioRpcError):
        # A failed call to another server: its code, message and details pass through as
        # they are, so the client sees what the backend said.
        await context.abort(
            error.code(), error.details() or "", tuple(error.trailing_metadata() or ())
        )
    log.exception("unhandled error in %s", _method(context), exc_info=error)
    await context.abort(
        grpc.StatusCode.INTERNAL, "internal server error; the server log has the details"
    )


def _method(context: grpc.aio.ServicerContext) -> str:
    try:
        return context._rpc_event.call_details.method.decode()  # type: ignore[attr-defined]
    except AttributeError:
        return "a call"


def _guard_unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await abort_with(context, error)

    return guarded


def _guard_stream(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for response in behavior(request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await abort_with(context, error)

    return guarded


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps ServemeshError, a backend's AioRpcError, and anything else (as INTERNAL)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _guard_unary(handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream and inspect.isasyncgenfunction(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                _guard_stream(handler.unary_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return handler
