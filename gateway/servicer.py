"""servemesh.v1.PredictionService at the gateway: route, forward with the deadline, relabel."""

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
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc

DESCRIBE_TIMEOUT_S = 5.0


class GatewayServicer(pb_grpc.PredictionServiceServicer):
    def __init__(self, router: Router, limits: RequestLimits) -> None:
        self._router = router
        self._limits = limits

    def _forwarded(self, request: pb.PredictRequest | pb.PredictStreamRequest) -> Route:
        """Routes `request`, checks it against the limits, and rewrites it for the backend,
        in place."""
        route = self._router.route(request.model)
        check_request(request, self._limits)
        request.model = route.backend_model
        request.request_id = request.request_id or uuid.uuid4().hex
        return route

    async def Predict(
        self, request: pb.PredictRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictResponse:
        with _counted("Predict") as call:
            route = call.route = self._forwarded(request)
            async with route.backend.admission.slot():  # waiting counts against the deadline
                response = await route.backend.predict(request, context.time_remaining())
        response.model = route.model
        return response

    async def PredictStream(
        self, request: pb.PredictStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        with _counted("PredictStream") as call:
            route = call.route = self._forwarded(request)
            async with route.backend.admission.slot():  # held for the whole stream
                stream = route.backend.predict_stream(request, context.time_remaining())
                try:
                    async for response in stream:
                        response.model = route.model
                        yield response
                finally:
                    await stream.aclose()  # type: ignore[attr-defined]

    async def _describe(self, route: Route, timeout: float | None) -> model_pb2.ModelInfo:
        timeout = DESCRIBE_TIMEOUT_S if timeout is None else min(timeout, DESCRIBE_TIMEOUT_S)
        try:
            info = await route.backend.describe(route.backend_model, timeout)
        except (grpc.aio.AioRpcError, Unavailable) as error:  # down: say so, still list it
            status = from_rpc_error(error) if isinstance(error, grpc.aio.AioRpcError) else error
            info = model_pb2.ModelInfo(
                ready=False,
                description=f"backend {route.backend.name} did not answer: {status}",
            )
        info.name, info.backend = route.model, route.backend.name
        return info

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        timeout = context.time_remaining()
        infos = await asyncio.gather(*(self._describe(r, timeout) for r in self._router.routes))
        return pb.ListModelsResponse(models=infos)

    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        route = self._router.route(request.name)
        return pb.GetModelResponse(model=await self._describe(route, context.time_remaining()))


@dataclass
class _Call:
    route: Route | None = None


@contextlib.contextmanager
def _counted(method: str) -> Iterator[_Call]:
    """Counts a call by model and status code once it ends. The model label is the routed
    name, or "" for a name that routes nowhere: a label per name a client makes up would
    grow without bound."""
    call, code = _Call(), "OK"
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
        metrics.CALLS.labels(call.route.model if call.route else "", method, code).inc()
