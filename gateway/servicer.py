"""servemesh.v1.PredictionService at the gateway: the contract's own front door to the
dispatcher, with the caller's gRPC deadline, request id and trace context."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from gateway.dispatch import Dispatcher
from runtime.incoming import accept, accept_stream
from servemesh.v1 import prediction_service_pb2 as pb
from servemesh.v1 import prediction_service_pb2_grpc as pb_grpc


class GatewayServicer(pb_grpc.PredictionServiceServicer):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatch = dispatcher

    async def Predict(
        self, request: pb.PredictRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictResponse:
        incoming = accept(context, request.request_id)
        return await self._dispatch.predict(request, context.time_remaining(), incoming=incoming)

    async def PredictStream(
        self, request: pb.PredictStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        incoming = await accept_stream(context, request.request_id)
        stream = self._dispatch.predict_stream(request, context.time_remaining(), incoming=incoming)
        try:
            async for response in stream:
                yield response
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(
            models=await self._dispatch.list_models(context.time_remaining())
        )

    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        info = await self._dispatch.get_model(request.name, context.time_remaining())
        return pb.GetModelResponse(model=info)
