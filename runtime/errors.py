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

from runtime.log_limit import RateLimitedLog
from servemesh.errors import InvalidArgument, ServemeshError

log = logging.getLogger(__name__)
# What callers can cause is logged at most once per interval each.
_malformed = RateLimitedLog(log)
_unhandled = RateLimitedLog(log)
HEALTH_METHODS = "/grpc.health.v1.Health/"
REFLECTION_METHODS = "/grpc.reflection."


def _with_own(context: grpc.aio.ServicerContext, trailing: Any) -> tuple[Any, ...]:
    """`trailing` after the trailing metadata that the call set itself (its request id), which
    an abort with metadata of its own would otherwise replace; a key of the call's own is not
    taken again from `trailing` (a backend's request id)."""
    own = tuple(context.trailing_metadata() or ())
    if not own:
        return tuple(trailing or ())
    keys = {key for key, _ in own}
    return own + tuple((key, value) for key, value in trailing or () if key not in keys)


async def abort_with(context: grpc.aio.ServicerContext, error: BaseException) -> NoReturn:
    """Ends the call with the status that `error` stands for."""
    if isinstance(error, ServemeshError):
        status = error.to_status()
        await context.abort(
            status.code, status.details, _with_own(context, status.trailing_metadata)
        )
    if isinstance(error, grpc.aio.AioRpcError):
        # A failed call to another server: its code, message and details pass through as
        # they are, so the client sees what the backend said.
        await context.abort(
            error.code(), error.details() or "", _with_own(context, error.trailing_metadata())
        )
    _unhandled.log(logging.ERROR, "unhandled error in %s", _method(context), exc_info=error)
    await context.abort(
        grpc.StatusCode.INTERNAL, "internal server error; the server log has the details"
    )


def status_name(error: BaseException) -> str:
    """The name of the status code that a call which raised `error` ends with, for metrics and
    traces: a caller that went away is CANCELLED, anything unmapped INTERNAL."""
    if isinstance(error, ServemeshError):
        return error.code.name
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code().name
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "INTERNAL"


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
# Checks a request body before it is parsed: (method, body) -> None, or raises.
BodyCheck = Callable[[str, bytes], None]
# Methods whose request names a service, a file or a model at most: health and reflection
# (open without a key by default), and the model listing of every servemesh server.
SMALL_REQUEST_METHODS = (
    HEALTH_METHODS,
    REFLECTION_METHODS,
    "/servemesh.v1.PredictionService/ListModels",
    "/servemesh.v1.PredictionService/GetModel",
)
SMALL_REQUEST_BYTES = 64 * 1024


def check_small_request(method: str, body: bytes) -> None:
    """Refuses a body over SMALL_REQUEST_BYTES at a method that takes small requests only."""
    if len(body) > SMALL_REQUEST_BYTES and method.startswith(SMALL_REQUEST_METHODS):
        raise InvalidArgument(
            f"the request is {len(body)} bytes; {method} takes at most {SMALL_REQUEST_BYTES}",
            reason="REQUEST_TOO_LARGE",
        )


def _decoded(body: Any, deserialize: Deserializer, method: str, check: BodyCheck) -> Any:
    """The request message. Decoding happens here rather than in gRPC, where a body that is
    not the method's message would end the call UNKNOWN, with a traceback in the log for
    every such call, instead of INVALID_ARGUMENT and one line now and then; and `check`
    weighs the body before parsing copies it."""
    if deserialize is None:
        return body
    check(method, body)
    try:
        return deserialize(body)
    except DecodeError as error:
        _malformed.log(logging.WARNING, "malformed request body for %s: %s", method, error)
        raise InvalidArgument(
            f"the request body is not a valid protobuf message for this method ({error}); "
            "send the method's request message",
            reason="MALFORMED_REQUEST",
        ) from None


async def _decoded_stream(
    bodies: AsyncIterator[Any], deserialize: Deserializer, method: str, check: BodyCheck
) -> AsyncIterator[Any]:
    async for body in bodies:
        yield _decoded(body, deserialize, method, check)


def _guard(
    behavior: Callable[..., Any],
    calls: CallsInFlight | None,
    decode: Deserializer,
    method: str,
    request_streaming: bool,
    check: BodyCheck,
) -> Callable[..., Any]:
    """`behavior` with its request decoded here and its exceptions mapped to statuses; for
    every kind of method, whether it returns, yields, or writes to its context."""

    def request(body: Any) -> Any:
        if request_streaming:
            return _decoded_stream(body, decode, method, check)
        return _decoded(body, decode, method, check)

    if inspect.isasyncgenfunction(behavior):

        async def guarded_stream(body: Any, context: grpc.aio.ServicerContext) -> Any:
            with calls.track() if calls else contextlib.nullcontext():
                try:
                    async for response in behavior(request(body), context):
                        yield response
                except grpc.aio.AbortError:
                    raise
                except Exception as error:
                    await abort_with(context, error)

        return guarded_stream

    async def guarded(body: Any, context: grpc.aio.ServicerContext) -> Any:
        with calls.track() if calls else contextlib.nullcontext():
            try:
                return await behavior(request(body), context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await abort_with(context, error)

    return guarded


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Decodes requests itself (malformed ones are INVALID_ARGUMENT) and maps ServemeshError,
    a backend's AioRpcError, and anything else (as INTERNAL), for methods of every kind,
    health and reflection included; counts the calls in flight in `calls`, all but health
    checks and reflection."""

    def __init__(self, body_check: BodyCheck | None = None) -> None:
        self.calls = CallsInFlight()
        self._body_check = body_check
        # By method: the handler last seen for it and its wrapping.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def _check(self, method: str, body: bytes) -> None:
        check_small_request(method, body)
        if self._body_check is not None:
            self._body_check(method, body)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        # The wrapping depends on the method and its handler alone, so it is built once per
        # method rather than on every call (services registered on the server hand back the
        # same handler object each time; a generic handler that makes a new one gets a new
        # wrapping).
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        # Health Watch and reflection streams stay open as long as their client likes: a
        # drain does not wait for them.
        untracked = method.startswith((HEALTH_METHODS, REFLECTION_METHODS))
        calls = None if untracked else self.calls
        behavior, make_handler = _KINDS[handler.request_streaming, handler.response_streaming]
        return make_handler(
            _guard(
                getattr(handler, behavior),
                calls,
                handler.request_deserializer,
                method,
                handler.request_streaming,
                self._check,
            ),
            None,  # the guard decodes
            handler.response_serializer,
        )


# (request streaming, response streaming) -> the handler's attribute and its constructor.
_KINDS = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}
