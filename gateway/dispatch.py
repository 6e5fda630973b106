"""What every front door of the gateway calls: route by model name, check the request against
the limits, wait for the backend's admission slot, call it with the caller's deadline, put the
public model name back, and count the call. The servemesh.v1 servicer, the OpenAI HTTP
listener and the Open Inference Protocol service are translations in front of this one path,
so a limit, a key or a metric cannot differ between them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc

from gateway import metrics
from gateway.config import RequestLimits
from gateway.limits import check_request
from gateway.router import Route, Router
from servemesh.errors import ServemeshError, Unavailable, from_rpc_error
from servemesh.v1 import model_pb2
from servemesh.v1 import prediction_service_pb2 as pb

DESCRIBE_TIMEOUT_S = 5.0


class Dispatcher:
    """Routes and runs predictions for every protocol the gateway speaks. `protocol` names the
    front door in the calls metric ("servemesh", "openai", "kserve")."""

    def __init__(self, router: Router, limits: RequestLimits) -> None:
        self.router = router
        self.limits = limits

    def _forwarded(self, request: pb.PredictRequest | pb.PredictStreamRequest) -> Route:
        """Routes `request`, checks it against the limits, and rewrites it for the backend,
        in place."""
        route = self.router.route(request.model)
        check_request(request, self.limits)
        request.model = route.backend_model
        request.request_id = request.request_id or uuid.uuid4().hex
        return route

    async def predict(
        self,
        request: pb.PredictRequest,
        timeout: float | None,
        protocol: str = "servemesh",
        method: str = "Predict",
    ) -> pb.PredictResponse:
        """One unary prediction; `timeout` is the caller's remaining deadline in seconds."""
        with _counted(protocol, method) as call:
            route = call.route = self._forwarded(request)
            async with route.backend.admission.slot():  # waiting counts against the deadline
                response = await route.backend.predict(request, _left(timeout, call))
        response.model = route.model
        return response

    async def predict_stream(
        self,
        request: pb.PredictStreamRequest,
        timeout: float | None,
        protocol: str = "servemesh",
        method: str = "PredictStream",
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        """A streamed prediction; closing the iterator cancels the backend's work."""
        with _counted(protocol, method) as call:
            route = call.route = self._forwarded(request)
            async with route.backend.admission.slot():  # held for the whole stream
                stream = route.backend.predict_stream(request, _left(timeout, call))
                try:
                    async for response in stream:
                        response.model = route.model
                        yield response
                finally:
                    await stream.aclose()  # type: ignore[attr-defined]

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
    route: Route | None = None
    started: float = 0.0


def _left(timeout: float | None, call: _Call) -> float | None:
    """What is left of `timeout` after the time spent waiting for admission."""
    if timeout is None:
        return None
    return max(timeout - (asyncio.get_running_loop().time() - call.started), 0.0)


@contextlib.contextmanager
def _counted(protocol: str, method: str) -> Iterator[_Call]:
    """Counts a call by model and status code once it ends. The model label is the routed
    name, or "" for a name that routes nowhere: a label per name a client makes up would
    grow without bound."""
    call, code = _Call(started=asyncio.get_running_loop().time()), "OK"
    try:
        yield call
    except ServemeshError as error:
        code = error.code.name
        raise
    except grpc.aio.AioRpcError as error:
        code = error.code().name
        raise
    except (asyncio.CancelledError, GeneratorExit):  # the caller went away
        code = "CANCELLED"
        raise
    except Exception:
        code = "INTERNAL"
        raise
    finally:
        model = call.route.model if call.route else ""
        metrics.CALLS.labels(model, protocol, method, code).inc()
