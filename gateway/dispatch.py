"""What every front door of the gateway calls: route by model name, check the request against
the limits, wait for the backend's admission slot, call it with the caller's deadline, put the
public model name back, and count, trace and log the call. The servemesh.v1 servicer, the
OpenAI HTTP listener and the Open Inference Protocol service are translations in front of this
one path, so a limit, a key, a metric or a span cannot differ between them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc
from prometheus_client import Counter

from gateway import metrics
from gateway.config import RequestLimits
from gateway.limits import check_request
from gateway.relay import REQUEST_ID, REQUEST_MODEL, RESPONSE_MODEL, Received, string_field
from gateway.router import Route, Router
from runtime import logs, tracing
from runtime.errors import status_name
from runtime.incoming import Incoming, choose_request_id
from servemesh.errors import Unavailable, from_rpc_error
from servemesh.metadata import REQUEST_ID_KEY
from servemesh.v1 import model_pb2
from servemesh.v1 import prediction_service_pb2 as pb

log = logging.getLogger(__name__)
DESCRIBE_TIMEOUT_S = 5.0
Request = pb.PredictRequest | pb.PredictStreamRequest


class Dispatcher:
    """Routes and runs predictions for every protocol the gateway speaks. `protocol` names the
    front door in the calls metric ("servemesh", "openai", "kserve")."""

    def __init__(self, router: Router, limits: RequestLimits) -> None:
        self.router = router
        self.limits = limits

    def _routed(self, request: Request, call: _Call) -> Route:
        """Routes `request` and checks it against the limits."""
        route = call.route = self.router.route(request.model)
        check_request(request, self.limits)
        return route

    def _forwarded(self, request: Request, call: _Call) -> Route:
        """Routes `request`, checks it against the limits, and rewrites it for the backend,
        in place: a request without an id of its own takes the call's."""
        route = self._routed(request, call)
        _rewrite(request, route, call)
        return route

    async def predict(
        self,
        request: pb.PredictRequest,
        timeout: float | None,
        protocol: str = "servemesh",
        method: str = "Predict",
        incoming: Incoming | None = None,
    ) -> pb.PredictResponse:
        """One unary prediction; `timeout` is the caller's remaining deadline in seconds,
        `incoming` what the front door read of the call (its request id and trace context)."""
        with _observed(protocol, method, incoming or _from_body(request)) as call:
            route = self._forwarded(request, call)
            async with route.backend.admission.slot():  # waiting counts against the deadline
                response = await route.backend.predict(request, _left(timeout, call), call.metadata)
        response.model = route.model
        return response

    async def relay_predict(
        self, received: Received, timeout: float | None, incoming: Incoming
    ) -> pb.PredictResponse | bytes:
        """Predict at the servemesh.v1 door, which has the request's bytes as well as the
        message: a backend that speaks servemesh.v1 gets those bytes with the gateway's
        rewrites appended, and its answer's bytes come back the same way (gateway.relay).
        Any other backend gets the message, as from `predict`."""
        request = received.message
        with _observed("servemesh", "Predict", incoming) as call:
            route = self._routed(request, call)
            backend = route.backend
            if backend.relays_bytes:
                body = received.body + _rewrites(request, route, call)
                async with backend.admission.slot():
                    answer = await backend.predict_serialized(
                        body, _left(timeout, call), call.metadata
                    )
                return answer + _model_field(route.model)
            _rewrite(request, route, call)
            async with backend.admission.slot():
                response = await backend.predict(request, _left(timeout, call), call.metadata)
        response.model = route.model
        return response

    async def predict_stream(
        self,
        request: pb.PredictStreamRequest,
        timeout: float | None,
        protocol: str = "servemesh",
        method: str = "PredictStream",
        incoming: Incoming | None = None,
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        """A streamed prediction; closing the iterator cancels the backend's work."""
        with _observed(protocol, method, incoming or _from_body(request)) as call:
            route = self._forwarded(request, call)
            async with route.backend.admission.slot():  # held for the whole stream
                stream = route.backend.predict_stream(request, _left(timeout, call), call.metadata)
                try:
                    async for response in stream:
                        response.model = route.model
                        yield response
                finally:
                    await stream.aclose()  # type: ignore[attr-defined]

    async def relay_predict_stream(
        self, received: Received, timeout: float | None, incoming: Incoming
    ) -> AsyncIterator[pb.PredictStreamResponse | bytes]:
        """PredictStream at the servemesh.v1 door: bytes relayed as in `relay_predict`, each
        message of the stream with its model appended; closing the iterator cancels the
        backend's work."""
        request = received.message
        with _observed("servemesh", "PredictStream", incoming) as call:
            route = self._routed(request, call)
            backend = route.backend
            if not backend.relays_bytes:
                _rewrite(request, route, call)
                async with backend.admission.slot():  # held for the whole stream
                    stream = backend.predict_stream(request, _left(timeout, call), call.metadata)
                    try:
                        async for response in stream:
                            response.model = route.model
                            yield response
                    finally:
                        await stream.aclose()  # type: ignore[attr-defined]
                return
            body = received.body + _rewrites(request, route, call)
            model = _model_field(route.model)
            async with backend.admission.slot():  # held for the whole stream
                chunks = backend.predict_stream_serialized(
                    body, _left(timeout, call), call.metadata
                )
                try:
                    async for chunk in chunks:
                        yield chunk + model
                finally:
                    await chunks.aclose()  # type: ignore[attr-defined]

    async def describe(self, route: Route, timeout: float | None) -> model_pb2.ModelInfo:
        """The backend's description of a routed model under its public name; a backend that
        does not answer gives `ready=False` and says why, so listing never fails on it."""
        timeout = DESCRIBE_TIMEOUT_S if timeout is None else min(timeout, DESCRIBE_TIMEOUT_S)
        try:
            info = await route.backend.describe(route.backend_model, timeout)
        except (grpc.aio.AioRpcError, Unavailable) as error:
            status = from_rpc_error(error) if isinstance(error, grpc.aio.AioRpcError) else error
            info = model_pb2.ModelInfo(
                ready=False,
                description=f"backend {route.backend.name} did not answer: {status}",
            )
        info.name, info.backend = route.model, route.backend.name
        return info

    async def list_models(self, timeout: float | None) -> list[model_pb2.ModelInfo]:
        """Every routed model, sorted by name, described by its backend at the same time."""
        return list(await asyncio.gather(*(self.describe(r, timeout) for r in self.router.routes)))

    async def get_model(self, name: str, timeout: float | None) -> model_pb2.ModelInfo:
        return await self.describe(self.router.route(name), timeout)


@dataclass
class _Call:
    request_id: str
    hop: tracing.Hop
    metadata: tracing.Metadata  # what goes to the backend: the request id, the trace context
    started: float
    route: Route | None = None


def _rewrite(request: Request, route: Route, call: _Call) -> None:
    """What the backend's request needs changed, changed in place: its model is the
    backend's name for it, and a request without an id of its own takes the call's."""
    request.model = route.backend_model
    request.request_id = request.request_id or call.request_id


def _rewrites(request: Request, route: Route, call: _Call) -> bytes:
    """The same changes as `_rewrite`, as fields to append to the request's bytes (only
    those that change something)."""
    rewrites = b""
    if request.model != route.backend_model:
        rewrites = string_field(REQUEST_MODEL, route.backend_model)
    if not request.request_id:
        rewrites += string_field(REQUEST_ID, call.request_id)
    return rewrites


@functools.cache  # a routed model name: as many as the config has
def _model_field(model: str) -> bytes:
    """An answer's model set to its public name, as a field to append to the answer's bytes."""
    return string_field(RESPONSE_MODEL, model)


def _from_body(request: Request) -> Incoming:
    """A call that came with nothing but its request (from code, not a front door)."""
    return Incoming(choose_request_id(request.request_id))


def _left(timeout: float | None, call: _Call) -> float | None:
    """What is left of `timeout` after the time spent waiting for admission."""
    if timeout is None:
        return None
    return max(timeout - (asyncio.get_running_loop().time() - call.started), 0.0)


# The calls counter's labelled children, looked up once each: labels() takes a lock and
# builds a key on every call. The keys are bounded: routed model names (or ""), the front
# doors' protocols and methods, and the status codes.
_CALLS_BY_LABELS: dict[tuple[str, str, str, str], Counter] = {}


def _calls_counter(model: str, protocol: str, method: str, code: str) -> Counter:
    key = (model, protocol, method, code)
    counter = _CALLS_BY_LABELS.get(key)
    if counter is None:
        counter = _CALLS_BY_LABELS[key] = metrics.CALLS.labels(*key)
    return counter


@contextlib.contextmanager
def _observed(protocol: str, method: str, incoming: Incoming) -> Iterator[_Call]:
    """One call, seen from outside: its span (continuing the caller's trace), its ids on the
    log lines it causes and in the metadata of its backend call, and, once it ends, its count
    by model and status code. The model label is the routed name, or "" for a name that
    routes nowhere: a label per name a client makes up would grow without bound."""
    request_id = incoming.request_id
    hop = tracing.begin(f"{protocol} {method}", incoming)
    logs.bind(request_id, hop.trace_id)
    loop = asyncio.get_running_loop()
    metadata = ((REQUEST_ID_KEY, request_id), *hop.headers())
    call, code = _Call(request_id, hop, metadata, started=loop.time()), "OK"
    try:
        yield call
    except BaseException as error:  # counted by its status; the caller going away too
        code = status_name(error)
        raise
    finally:
        route = call.route
        model = route.model if route else ""
        _calls_counter(model, protocol, method, code).inc()
        backend = route.backend.name if route else ""
        if hop.span is not None:
            attributes = {
                "servemesh.protocol": protocol,
                "rpc.method": method,
                "servemesh.request_id": request_id,
                "servemesh.model": model,
                "servemesh.backend": backend,
            }
            hop.end(code, attributes)
        if log.isEnabledFor(logging.DEBUG):
            ms = (loop.time() - call.started) * 1000
            log.debug("%s %s %s via %s: %s in %.1f ms", protocol, method, model, backend, code, ms)
