"""One server interceptor that turns exceptions into gRPC statuses, for unary and stream calls."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from servemesh.errors import InvalidArgument, ServemeshError

log = logging.getLogger(__name__)
HEALTH_METHODS = "/grpc.health.v1.Health/"


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


class CallsInFlight:
    """Counts the calls being served, so a draining server knows when its work is done."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        self.count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.count -= 1
            if not self.count:
                self._idle.set()

    async def idle(self) -> None:
        """Returns once no call is being served."""
        await self._idle.wait()


Deserializer = Callable[[bytes], Any] | None


def _decoded(body: Any, deserialize: Deserializer) -> Any:
    """The request message. Decoding happens here rather than in gRPC, where a body that is
    not the method's message would end the call UNKNOWN instead of INVALID_ARGUMENT."""
    if deserialize is None:
        return body
    try:
        return deserialize(body)
    except DecodeError as error:
        raise InvalidArgument(
            f"the request body is not a valid protobuf message for this method ({error}); "
            "send the method's request message",
            reason="MALFORMED_REQUEST",
        ) from None


def _guard_unary(
    behavior: Callable[..., Awaitable[Any]], calls: CallsInFlight | None, decode: Deserializer
) -> Callable[..., Awaitable[Any]]:
    async def guarded(body: Any, context: grpc.aio.ServicerContext) -> Any:
        with calls.track() if calls else contextlib.nullcontext():
            try:
                return await behavior(_decoded(body, decode), context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await abort_with(context, error)

    return guarded


def _guard_stream(
    behavior: Callable[..., AsyncIterator[Any]], calls: CallsInFlight | None, decode: Deserializer
) -> Callable[..., AsyncIterator[Any]]:
    async def guarded(body: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        with calls.track() if calls else contextlib.nullcontext():
            try:
                async for response in behavior(_decoded(body, decode), context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await abort_with(context, error)

    return guarded


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps ServemeshError, a backend's AioRpcError, and anything else (as INTERNAL); counts
    the calls in flight in `calls`, all but health checks (a Watch never ends by itself)."""

    def __init__(self) -> None:
        self.calls = CallsInFlight()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        calls = None if method.startswith(HEALTH_METHODS) else self.calls
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _guard_unary(handler.unary_unary, calls, handler.request_deserializer),
                None,  # the guard decodes
                handler.response_serializer,
            )
        if handler.unary_stream and inspect.isasyncgenfunction(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                _guard_stream(handler.unary_stream, calls, handler.request_deserializer),
                None,
                handler.response_serializer,
            )
        return handler
